"""Thread defaults follow what the process may really use, containers included."""

from catdog.model.backends import _cgroup_cpu_limit, default_threads


def test_cgroup_quota_is_read(tmp_path):
    limit = tmp_path / "cpu.max"
    limit.write_text("150000 100000\n")
    assert _cgroup_cpu_limit(limit) == 1
    limit.write_text("400000 100000\n")
    assert _cgroup_cpu_limit(limit) == 4
    limit.write_text("max 100000\n")
    assert _cgroup_cpu_limit(limit) is None
    assert _cgroup_cpu_limit(tmp_path / "absent") is None


def test_default_threads_is_positive():
    assert default_threads() >= 1
