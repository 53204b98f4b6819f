"""The thermal watch reads a sysfs tree through a real ``grep`` (as it does on a device), and says which rows ran on a
throttled chip. The trees are made up: this VM has no thermal zone."""
from __future__ import annotations

from pathlib import Path

import pytest

from edgeres.bench import thermal
from edgeres.bench.thermal import ThermalWatch, short, snapshot, trips
from edgeres.remote import LocalDevice
from tests.helpers.sysfs import set_gpu_mhz, set_temp, thermal_tree

NANO = {"AO-therm": (41.5, None), "CPU-therm": (44.0, 97.0), "GPU-therm": (43.5, 97.0), "PLL-therm": (40.0, None),
        "PMIC-Die": (100.0, None), "thermal-fan-est": (42.0, None)}


@pytest.fixture
def tree(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setattr(thermal, "THERMAL_DIR", str(tmp_path / "thermal"))
    monkeypatch.setattr(thermal, "DEVFREQ_DIR", str(tmp_path / "devfreq"))
    return tmp_path


def test_a_reading_of_every_zone_but_the_constant_pmic(tree: Path) -> None:
    thermal_tree(tree, NANO, gpu_mhz=921.6)
    s = snapshot(LocalDevice())
    assert s.temps_c == {"AO-therm": 41.5, "CPU-therm": 44.0, "GPU-therm": 43.5, "PLL-therm": 40.0,
                         "thermal-fan-est": 42.0}
    assert s.gpu_mhz == pytest.approx(921.6)
    assert trips(LocalDevice()) == {"CPU-therm": 97.0, "GPU-therm": 97.0}  # passive, not the active (fan) trip


def test_a_sensor_that_is_off_and_a_twice_named_zone(tree: Path) -> None:
    thermal_tree(tree, {"acpitz": (30.0, None), "cv0-thermal": (-256.0, None)})
    d = tree / "thermal" / "thermal_zone2"  # a second zone of the same type
    d.mkdir()
    (d / "type").write_text("acpitz\n")
    (d / "temp").write_text("35000\n")
    cv = tree / "thermal" / "thermal_zone3"  # a zone whose temp cannot be read (an Orin Nano's CV zones: EAGAIN)
    (cv / "temp").mkdir(parents=True)
    (cv / "type").write_text("cv1-thermal\n")
    assert snapshot(LocalDevice()).temps_c == {"acpitz": 30.0, "acpitz#2": 35.0}
    for i, (kind, trip) in enumerate((("x86_pkg_temp", "0"), ("x86_pkg_temp", "60000"), ("soc-thermal", "0")), 4):
        z = tree / "thermal" / f"thermal_zone{i}"  # trip points that notify only (x86), or that are unset (0)
        z.mkdir()
        for name, value in (("type", kind), ("temp", "52000"), ("trip_point_0_type", "passive"),
                            ("trip_point_0_temp", trip)):
            (z / name).write_text(value + "\n")
    assert trips(LocalDevice()) == {}


def test_rows_whose_gpu_clock_fell_and_zones_near_their_throttle_point(tree: Path) -> None:
    thermal_tree(tree, NANO, gpu_mhz=921.6)
    watch = ThermalWatch(LocalDevice())
    assert watch.active and watch.before.temps_c["GPU-therm"] == 43.5
    for _ in range(2):
        watch.sample("fp32")
    set_temp(tree, 2, 93.5)  # GPU-therm, 3.5 °C under its 97 °C
    set_gpu_mhz(tree, 614.4)
    watch.sample("fp16")
    set_gpu_mhz(tree, 921.6)
    watch.sample("fp16")
    fp32, fp16 = watch.row("fp32"), watch.row("fp16")
    assert fp32 is not None and fp16 is not None
    assert fp32["gpu_mhz"] == [pytest.approx(921.6)] * 2 and fp32["samples"] == 2
    assert fp16["gpu_mhz"] == [pytest.approx(614.4), pytest.approx(921.6)]
    assert (fp16["hottest_zone"], fp16["hottest_c"]) == ("GPU-therm", 93.5)
    assert short(fp16) == "GPU-therm 93.5 °C, GPU 614–922 MHz"
    warned = watch.warnings(clocks_locked=True)
    assert len(warned) == 2
    assert "fp16 (to 614 MHz)" in warned[0] and "fp32" not in warned[0] and "that is throttling" in warned[0]
    assert "GPU-therm 93.5 °C (throttles at 97 °C)" in warned[1] and "CPU-therm" not in warned[1]
    report = watch.report(clocks_locked=None)
    assert report["measured"] and report["trips_c"]["GPU-therm"] == 97.0
    assert "DVFS" in report["warnings"][0]  # clocks not known to be locked: the fall may be DVFS
    # clocks known not to be locked: a fall is DVFS, which the device state's own warning names; zones still warn
    assert [w[:20] for w in watch.warnings(clocks_locked=False)] == ["thermal zones came w"]


def test_a_steady_cool_bench_gets_no_warning(tree: Path) -> None:
    thermal_tree(tree, NANO, gpu_mhz=921.6)
    watch = ThermalWatch(LocalDevice())
    for label in ("fp32", "fp16", "int8"):
        watch.sample(label)
    assert watch.warnings() == []
    assert watch.row("nothing") is None


def test_a_machine_without_zones_says_so(tree: Path) -> None:
    (tree / "thermal").mkdir()
    watch = ThermalWatch(LocalDevice())
    watch.sample("fp32")
    assert not watch.active and watch.row("fp32") is None
    report = watch.report()
    assert report["measured"] is False and "no thermal zone" in report["why"]


def test_nvidia_smi_lines_of_each_gpu():
    from edgeres.bench.thermal import parse_nvidia_smi

    # two GPUs: the busy one hot, fast and at its power cap and thermal limit; the idle one cool, slow and idle
    two = "83, 1830, 0x0000000000000024\n41, 210, 0x0000000000000001\n"
    assert parse_nvidia_smi(two) == (83.0, 1830.0, ["power cap", "thermal slowdown"])
    assert parse_nvidia_smi("[N/A], [N/A], [N/A]\n") == (None, None, [])
    assert parse_nvidia_smi("NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver.\n") == (
        None, None, [])


def test_a_desktop_gpus_slowdowns_from_nvidia_smi(tree, tmp_path, monkeypatch):
    """A stand-in nvidia-smi on PATH (no thermal zone in the tree): its GPU's reading is a zone of its own, its clock
    the GPU's, and a thermal slowdown during a row is a warning where the power cap (how boost works) is not."""
    import os

    from tests.helpers.sysfs import install_nvidia_smi

    (tree / "thermal").mkdir()
    reading = tmp_path / "smi.txt"
    reading.write_text("45, 1830, 0x0000000000000001\n")  # idle before the bench
    install_nvidia_smi(tmp_path / "bin", reading)
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}:{os.environ['PATH']}")
    assert not ThermalWatch(LocalDevice()).active  # not a GPU target: nvidia-smi is not asked
    watch = ThermalWatch(LocalDevice(), gpu=True)
    assert watch.nvidia_smi and watch.before.temps_c == {"GPU (nvidia-smi)": 45.0} and watch.before.gpu_mhz == 1830
    reading.write_text("78, 1800, 0x0000000000000004\n")
    watch.sample("fp32")
    reading.write_text("91, 1410, 0x0000000000000020\n")
    watch.sample("fp16")
    assert watch.row("fp32")["slowdowns"] == ["power cap"] and watch.row("fp16")["gpu_mhz"] == [1410.0, 1410.0]
    warned = watch.warnings()
    assert warned[0] == ("the GPU clock fell during fp16 (to 1410 MHz), below 90% of the bench's highest 1800 MHz; "
                         "their latency is not the model's alone: throttling, or DVFS if clocks are not locked: lock "
                         "them (sudo nvidia-smi --lock-gpu-clocks=MHZ,MHZ), cool the GPU (its fans, the case's "
                         "airflow) and re-run")
    assert warned[1].startswith("nvidia-smi reported the GPU's clocks held down during fp16 (thermal slowdown): ")
    assert "fp32" not in warned[1]
    assert short(watch.row("fp16")) == "GPU (nvidia-smi) 91.0 °C, GPU 1410 MHz, held down: thermal slowdown"
    assert "nvidia-smi's temperature.gpu" in watch.report()["how"]


def test_two_zones_of_one_type_keep_their_own_throttle_points(tree):
    """acpitz twice: the first without a throttle trip, the second throttling at 90 °C. Each reading is compared
    with its own zone's point, whichever of the two the temperature or the trip files leave out."""
    thermal_tree(tree, {"acpitz": (30.0, None)})
    d = tree / "thermal" / "thermal_zone1"
    d.mkdir()
    for name, value in (("type", "acpitz"), ("temp", "88000"), ("trip_point_0_type", "passive"),
                        ("trip_point_0_temp", "90000")):
        (d / name).write_text(value + "\n")
    watch = ThermalWatch(LocalDevice())
    assert watch.before.temps_c == {"acpitz": 30.0, "acpitz#1": 88.0}
    assert watch.trips_c == {"acpitz#1": 90.0}
    (tree / "thermal" / "thermal_zone0" / "temp").unlink()  # the first zone now unreadable: names stay put
    assert snapshot(LocalDevice()).temps_c == {"acpitz#1": 88.0}
