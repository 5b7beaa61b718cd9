"""scripts/demo.sh's own interface: its help, and bad settings stopped before any work."""
import os
import subprocess

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEMO = os.path.join(REPO, "scripts", "demo.sh")


def run_demo(*args, **env):
    return subprocess.run(["bash", DEMO, *args], capture_output=True, text=True, timeout=60,
                          env={**os.environ, **env})


def test_help_lists_every_setting():
    result = run_demo("--help")
    assert result.returncode == 0
    for name in ("SEED", "DEMO_EPOCHS", "DEMO_DIR", "DATA", "PYTHON"):
        assert f"\n  {name} [" in result.stdout, name
    assert "set -euo" not in result.stdout


def test_bad_settings_stop_before_any_work(tmp_path):
    out = tmp_path / "demo"
    for args, env in (((), {"DEMO_EPOCHS": "ten"}), ((), {"SEED": "-1"}), ((), {"DEMO_EPOCHS": "0"}),
                      (("--epochs", "3"), {})):
        result = run_demo(*args, DEMO_DIR=str(out), **env)
        assert result.returncode == 2, (args, env, result.stderr)
        assert result.stderr.strip() and not out.exists()
