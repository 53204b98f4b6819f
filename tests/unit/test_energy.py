"""Power and energy: the tegrastats parser on real lines of six Jetson generations, and the local meters' protocol."""
from __future__ import annotations

from pathlib import Path

import pytest

from edgeres import energy
from edgeres.energy import RaplMeter, board_watts, energy_per_image_mj, find_meter, parse_tegrastats, summarize

SAMPLES = Path(__file__).resolve().parents[1] / "data" / "tegrastats" / "samples.txt"
WANT = {  # board: (source of board power, W, rails)
    "jetson-nano": ("POM_5V_IN", 0.9, {"POM_5V_IN", "POM_5V_GPU", "POM_5V_CPU"}),
    "jetson-tx2": ("VDD_IN", 2.003, {"VDD_IN", "VDD_CPU", "VDD_GPU", "VDD_SOC", "VDD_WIFI", "VDD_DDR"}),
    "jetson-agx-xavier": ("SYS5V", 1.889, {"GPU", "CPU", "SOC", "CV", "VDDRQ", "SYS5V"}),
    "jetson-orin-nano": ("VDD_IN", 5.765, {"VDD_IN", "VDD_CPU_GPU_CV", "VDD_SOC"}),
    "jetson-agx-orin": ("sum of VDDQ_VDD2_1V8AO+VDD_CPU_CV+VDD_GPU_SOC+VIN_SYS_5V0", 8.66,
                        {"VDD_GPU_SOC", "VDD_CPU_CV", "VIN_SYS_5V0", "VDDQ_VDD2_1V8AO"}),
    "jetson-thor": ("VIN", 16.802, {"VDD_GPU", "VDD_CPU_SOC_MSS", "VIN_SYS_5V0", "VIN"}),
}


def samples() -> dict[str, str]:
    out = {}
    for ln in SAMPLES.read_text().splitlines():
        if ln.strip() and not ln.startswith("#"):
            board, line, _source = ln.split(" ## ")
            out[board] = line
    return out


def test_every_kept_line_reads_into_the_same_fields():
    got = samples()
    assert sorted(got) == sorted(WANT)
    for board, line in got.items():
        rails = parse_tegrastats(line)
        source, watts, names = WANT[board]
        assert set(rails) == names, board  # no RAM, SWAP, APE, *_FREQ or temperature taken for a rail
        w, src = board_watts(rails)
        assert (src, round(w, 3)) == (source, watts), board


def test_thor_rail_names_and_three_value_form():
    rails = parse_tegrastats("GR3D_FREQ 0% VDD_GPU 0mW/0mW VDD_CPU_SOC_MSS 6510mW/6510mW VIN_SYS_5V0 6520mW/6520mW "
                             "VIN 23000mW/23000mW/23000mW")
    assert board_watts(rails) == (23.0, "VIN") and rails["VDD_CPU_SOC_MSS"] == 6.51


def test_summary_and_energy_per_image():
    line = samples()["jetson-orin-nano"]
    reading = summarize([line, line.replace("VDD_IN 5765mW", "VDD_IN 6765mW")], 1.0)
    assert reading.samples == 2 and reading.mean_w == pytest.approx(6.265) and reading.source == "VDD_IN"
    idle = summarize([line.replace("VDD_IN 5765mW", "VDD_IN 3000mW")], 1.0)
    e = energy_per_image_mj(reading, idle, seconds_per_query=0.010, batch=32)
    assert e["mj_per_image"] == pytest.approx(6.265 * 0.010 / 32 * 1000)
    assert e["mj_per_image_above_idle"] == pytest.approx(3.265 * 0.010 / 32 * 1000)
    assert summarize(["RAM 613/3964MB CPU [2%@102] GR3D_FREQ 0%"], 1.0).mean_w is None  # no rails: not root


def test_rapl_protocol_and_the_reason_when_absent(tmp_path, monkeypatch):
    monkeypatch.setattr(energy, "POWERCAP", tmp_path / "powercap")
    meter, why = find_meter("cpu")
    assert meter is None and "no RAPL energy counters" in why
    zone = tmp_path / "powercap" / "intel-rapl:0"
    zone.mkdir(parents=True)
    (zone / "energy_uj").write_text("1000000\n")
    meter, why = find_meter("cpu")
    assert isinstance(meter, RaplMeter) and why == ""
    (zone / "energy_uj").write_text("3000000\n")  # 2 J later
    assert meter.read()["VIN"] > 0
    meter2, why2 = find_meter("desktop")
    assert meter2 is not None or "NVML" in why2


def test_ina3221_sysfs_of_both_drivers(tmp_path, monkeypatch):
    """JetPack 5+ hwmon (mV × mA) and JetPack 4 iio (mW) layouts; the board rail becomes the board power."""
    hw = tmp_path / "ina3221" / "1-0040" / "hwmon" / "hwmon3"
    hw.mkdir(parents=True)
    for n, (label, mv, ma) in enumerate([("VDD_IN", 5000, 1200), ("VDD_CPU_GPU_CV", 5000, 300)], 1):
        (hw / f"in{n}_label").write_text(label + "\n")
        (hw / f"in{n}_input").write_text(f"{mv}\n")
        (hw / f"curr{n}_input").write_text(f"{ma}\n")
    iio = tmp_path / "ina3221x" / "6-0040" / "iio:device0"
    iio.mkdir(parents=True)
    (iio / "rail_name_0").write_text("POM_5V_IN\n")
    (iio / "in_power0_input").write_text("2500\n")
    channels = energy.ina3221_channels((tmp_path / "ina3221", tmp_path / "ina3221x"))
    assert [c[0] for c in channels] == ["VDD_IN", "VDD_CPU_GPU_CV", "POM_5V_IN"]
    rails = energy.Ina3221Meter(channels).read()
    assert rails == {"VDD_IN": 6.0, "VDD_CPU_GPU_CV": 1.5, "POM_5V_IN": 2.5}
    assert board_watts(rails) == (6.0, "VDD_IN")
    monkeypatch.setattr(energy, "INA3221", (tmp_path / "ina3221",))
    meter, _ = find_meter("jetson")
    assert isinstance(meter, energy.Ina3221Meter)
    _, reading = meter.measure(lambda: __import__("time").sleep(0.25))
    assert reading.samples >= 2 and reading.mean_w == 6.0 and reading.source == "VDD_IN"


def test_nvml_meter_speaks_nvidia_ml_py(monkeypatch):
    """A STAND-IN for ``pynvml`` (nvidia-ml-py) with its real function names: proves the calls and the mW → W
    conversion only; no power is read from any GPU here."""
    import sys
    import types

    from edgeres.energy import NvmlMeter, find_meter

    calls = []
    fake = types.ModuleType("pynvml")
    fake.nvmlInit = lambda: calls.append("init")
    fake.nvmlDeviceGetHandleByIndex = lambda i: calls.append(("handle", i)) or "h0"
    fake.nvmlDeviceGetPowerUsage = lambda h: 45_250  # milliwatts, as NVML reports
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    meter, why = find_meter("desktop")
    assert isinstance(meter, NvmlMeter) and why == ""
    assert meter.read() == {"VIN": 45.25} and calls == ["init", ("handle", 0)]

    def no_driver():
        raise RuntimeError("NVML Shared Library Not Found")

    fake.nvmlInit = no_driver
    meter, why = find_meter("desktop")
    assert meter is None and "nvidia-ml-py" in why and "Not Found" in why


def test_rapl_windows_do_not_count_the_energy_spent_between_them(tmp_path, monkeypatch):
    """Counters that advance at 5 W, and 1 kJ spent between two windows (another model's work): each window reads
    5 W. Before, the second window's first sample spanned the gap and took that kilojoule as its own."""
    import time

    spent = {"uj": 0}
    monkeypatch.setattr(RaplMeter, "_energy", lambda self: [int(5e6 * time.perf_counter()) + spent["uj"]])
    meter = RaplMeter([tmp_path])
    _, first = meter.measure(lambda: time.sleep(0.35))
    spent["uj"] = 10 ** 9
    _, second = meter.measure(lambda: time.sleep(0.35))
    assert first.mean_w == pytest.approx(5.0, rel=0.01) and second.mean_w == pytest.approx(5.0, rel=0.01)
