"""Hostile input and faults: for each case, the command, a non-zero exit, one line without a traceback, and nothing of
the user's lost or left behind. Grows with every defect found (issue 12)."""
from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from edgeres.errors import ConfigError
from edgeres.remote import SshHost
from edgeres.ssh_options import SSH_OPTION_ALLOW, parse_ssh_option
from tests.helpers.cli import assert_one_line_error, edgeres


def digest(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def tree(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): digest(p) for p in sorted(folder.rglob("*")) if p.is_file()}


# ---- defect 1: data loss ------------------------------------------------------------------------------------------

def test_calib_make_refuses_a_folder_with_user_files(tmp_path):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "thesis.tex").write_text("years of work")
    (out / "sub").mkdir()
    (out / "sub" / "photo.png").write_bytes(b"\x89PNG not really")
    before = tree(out)
    r = edgeres("calib", "make", "--per-class", "1", "--out", str(out))
    assert_one_line_error(r, "files edgeres did not make", "new or empty folder")
    assert tree(out) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine"]  # no temporary left beside it


def test_calib_make_refuses_a_file_as_out(tmp_path):
    out = tmp_path / "notes.txt"
    out.write_text("keep me")
    assert_one_line_error(edgeres("calib", "make", "--per-class", "1", "--out", str(out)), "is a file")
    assert out.read_text() == "keep me"


def test_calib_make_replaces_its_own_set_but_not_a_set_with_added_files(tmp_path):
    out = tmp_path / "set"
    assert edgeres("calib", "make", "--per-class", "1", "--out", str(out)).returncode == 0
    assert edgeres("calib", "make", "--per-class", "2", "--seed", "1", "--out", str(out)).returncode == 0
    assert len(list(out.glob("*.png"))) == 20
    (out / "README.md").write_text("my notes on this set")
    r = edgeres("calib", "make", "--per-class", "1", "--out", str(out))
    assert_one_line_error(r, "files edgeres did not make")
    assert (out / "README.md").read_text() == "my notes on this set" and len(list(out.glob("*.png"))) == 20


def test_two_calib_writers_at_once_leave_one_whole_set(tmp_path):
    out = tmp_path / "set"
    cmd = [sys.executable, "-m", "edgeres", "calib", "make", "--per-class", "3", "--out", str(out)]
    procs = [subprocess.Popen([*cmd, "--seed", str(s)], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
             for s in (1, 2)]
    codes = [p.wait(300) for p in procs]
    assert 0 in codes
    from edgeres.data.calibration import load_calibration_set
    cal = load_calibration_set(out, allow_small=True)  # whole: every listed file present and decodable
    assert len(cal.images) == 30 and len(list(out.glob("*.png"))) == 30
    assert sorted(p.name for p in tmp_path.iterdir()) == ["set"]


def test_a_stale_temporary_of_a_killed_run_is_removed(tmp_path):
    stale = tmp_path / ".set.999999999.abc.tmp"  # no such process
    stale.mkdir()
    (stale / "00000.png").write_bytes(b"half")
    assert edgeres("calib", "make", "--per-class", "1", "--out", str(tmp_path / "set")).returncode == 0
    assert not stale.exists()


def test_export_and_quantize_never_write_over_their_input(small_run, tmp_path):
    cfg, _ = small_run
    ck = tmp_path / "model.pt"
    onnx = tmp_path / "model.onnx"
    shutil.copy(Path(cfg.out) / "model.pt", ck)
    shutil.copy(Path(cfg.out) / "model.onnx", onnx)
    before = {p: digest(p) for p in (ck, onnx)}
    assert_one_line_error(edgeres("export", str(ck), "--out", str(ck)), "would overwrite the checkpoint")
    odd = tmp_path / "m.onnx.json"  # a checkpoint named like the manifest that `--out m.onnx` would write
    shutil.copy(ck, odd)
    assert_one_line_error(edgeres("export", str(odd), "--out", str(tmp_path / "m.onnx")), "would overwrite")
    assert digest(odd) == before[ck]
    odd.unlink()
    assert_one_line_error(edgeres("quantize", str(onnx), "--int8", "--out", str(onnx),
                                  "--calibration", str(cfg.quant.calibration)), "would overwrite the input model")
    assert_one_line_error(edgeres("quantize", str(onnx), "--int8", "--out", str(tmp_path / "." / "model.onnx"),
                                  "--calibration", str(cfg.quant.calibration)), "would overwrite")
    assert_one_line_error(edgeres("build", str(onnx), "--target", "cpu", "--out", str(onnx)), "would overwrite")
    assert {p: digest(p) for p in (ck, onnx)} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.onnx", "model.pt"]


def test_an_out_that_is_a_folder_is_refused_before_work(small_run, tmp_path):
    cfg, _ = small_run
    r = edgeres("export", str(Path(cfg.out) / "model.pt"), "--out", str(tmp_path))
    assert_one_line_error(r, "is a folder")


# ---- defect 2: --ssh-option must never run a local command or loosen host-key checks ----------------------------

HOSTILE_SSH_OPTIONS = [
    "ProxyCommand touch {canary} #=x",
    "ProxyCommand=touch {canary}",
    "proxycommand touch {canary}",
    "  ProxyCommand   =   touch {canary}",
    "KnownHostsCommand=/bin/sh -c 'touch {canary}'",
    "KnownHostsCommand /usr/bin/touch {canary}",
    "LocalCommand=touch {canary}",
    "PermitLocalCommand=yes",
    "NoHostAuthenticationForLocalhost=yes",
    "StrictHostKeyChecking=no",
    "StrictHostKeyChecking accept-new",
    "BatchMode=no",
    "VerifyHostKeyDNS=yes",
    "UpdateHostKeys=yes",
    "Match exec \"touch {canary}\"",
    "Include /tmp/evil.conf",
    "ControlPath=/tmp/x",
    "ProxyJump=-oProxyCommand=touch_{canary}",
    "Port=22 -oProxyCommand=touch",
    "Port=22;touch {canary}",
    "User=$(touch {canary})",
    "User=`touch {canary}`",
    "HostName=evil\nProxyCommand touch {canary}",
    "Port=",
    "=22",
    "",
]


@pytest.mark.parametrize("option", HOSTILE_SSH_OPTIONS)
def test_hostile_ssh_options_are_refused(option, tmp_path):
    canary = tmp_path / "canary"
    opt = option.format(canary=canary)
    with pytest.raises(ConfigError):
        SshHost("me@127.0.0.1", (opt,))
    with pytest.raises(ConfigError):
        parse_ssh_option(opt)
    assert not canary.exists()


@pytest.mark.parametrize("option", ["ProxyCommand touch {canary} #=x", "KnownHostsCommand=/usr/bin/touch {canary}",
                                    "NoHostAuthenticationForLocalhost=yes"])
def test_hostile_ssh_option_through_the_cli_runs_nothing(option, tmp_path, small_run):
    cfg, _ = small_run
    canary = tmp_path / "canary"
    r = edgeres("bench", str(Path(cfg.out) / "model.onnx"), "--host", "me@127.0.0.1", "--out", str(tmp_path / "r"),
                "--ssh-option", option.format(canary=canary))
    assert_one_line_error(r, "--ssh-option")
    assert not canary.exists() and not (tmp_path / "r").exists()


@pytest.mark.parametrize("option,expected", [
    ("Port=2222", "Port=2222"), ("port 2222", "Port=2222"), ("Port = 2222", "Port=2222"),
    ("UserKnownHostsFile=/home/me/.ssh/kh", "UserKnownHostsFile=/home/me/.ssh/kh"),
    ("proxyjump none", "ProxyJump=none"), ("serveraliveinterval=5", "ServerAliveInterval=5"),  # a jump: test_ssh_options
])
def test_allowed_ssh_options_are_passed_in_canonical_form(option, expected):
    argv = SshHost("me@dev", (option,)).argv(["true"])
    assert expected in argv
    i = argv.index(expected)
    assert argv[i - 1] == "-o"


def test_allow_list_has_no_option_that_runs_a_command_or_loosens_checks():
    dangerous = {"proxycommand", "localcommand", "permitlocalcommand", "knownhostscommand", "stricthostkeychecking",
                 "batchmode", "nohostauthenticationforlocalhost", "verifyhostkeydns", "match", "include",
                 "controlpath", "controlmaster", "remotecommand", "sendenv", "setenv", "forwardagent"}
    assert not dangerous & set(SSH_OPTION_ALLOW)


# ---- defect 4: a file edgeres made is checked against its manifest before the next stage uses it -----------------

def test_a_changed_checkpoint_or_model_is_refused_by_the_next_stage(small_run, tmp_path):
    cfg, _ = small_run
    for name in ("model.pt", "model.pt.json", "model.onnx", "model.onnx.json"):
        shutil.copy(Path(cfg.out) / name, tmp_path / name)
    ck, onnx = tmp_path / "model.pt", tmp_path / "model.onnx"
    for path in (ck, onnx):
        blob = bytearray(path.read_bytes())
        blob[len(blob) // 2] ^= 0xFF  # one flipped byte, as a bad disk or copy leaves it
        path.write_bytes(bytes(blob))
    r = edgeres("export", str(ck), "--out", str(tmp_path / "new.onnx"))
    assert_one_line_error(r, "is not the checkpoint edgeres wrote", "sha256 differs")
    r = edgeres("quantize", str(onnx), "--calibration", str(cfg.quant.calibration), "--out", str(tmp_path / "q.onnx"))
    assert_one_line_error(r, "is not the model edgeres wrote", "edgeres export")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.onnx", "model.onnx.json", "model.pt", "model.pt.json"]


# ---- defect 16: misleading messages -------------------------------------------------------------------------------

def test_a_missing_identity_file_is_named_not_a_refused_login(small_run, tmp_path):
    cfg, _ = small_run
    r = edgeres("bench", str(Path(cfg.out) / "model.onnx"), "--host", "me@127.0.0.1", "--identity",
                str(tmp_path / "no_such_key"), "--out", str(tmp_path / "r"))
    assert_one_line_error(r, "--identity", "does not exist")
    assert not (tmp_path / "r").exists()
