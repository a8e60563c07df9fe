"""benchmarks/speed.py: a real (tiny) measured run of each kind, and the ratios it reports."""

import pytest

from benchmarks import speed


@pytest.mark.parametrize("algo", ["qmix", "mappo"])
def test_a_run_of_ours_reports_its_speed_update_time_and_memory(algo):
    result = speed.run_ours(algo, True, "matrix:two_step", 1000, threads=1)
    assert result["env_steps"] == 1000 and result["env_steps_per_s"] > 0
    assert 0 < result["update_ms"] < 10_000
    assert result["peak_rss_mib"] > 50  # torch alone is more than that: this is the child's, not ours


@pytest.mark.parametrize("algo", speed.ALGOS)
def test_minimal_update_runs_the_script_networks(algo):
    assert speed.minimal_update_ms(algo, advice=True, env_id="matrix:two_step", threads=1, repeats=2) > 0


def test_update_times_time_the_padded_and_the_real_steps_update_on_the_measured_lengths():
    times = speed.update_times("vdn", True, "lbforaging:Foraging-8x8-2p-3f-v3", threads=1, repeats=1, episodes=40)
    assert 0.05 < times["padded_share"] < 0.6  # the LBF run's lengths (benchmarks/results/padding_lbf.csv)
    assert times["padded_ms"] > 0 and times["real_steps_ms"] > 0
    assert times["speedup"] == times["padded_ms"] / times["real_steps_ms"]


def test_update_measurement_writes_a_row_for_each_configuration(tmp_path, monkeypatch):
    fake = {"padded_share": 0.6, "padded_ms": 90.0, "real_steps_ms": 45.0, "speedup": 2.0}
    monkeypatch.setattr(speed, "update_times", lambda *args: fake)
    speed.measure_updates(["qmix", "mappo"], [1], repeats=2, out=tmp_path / "updates.csv")
    rows = (tmp_path / "updates.csv").read_text().splitlines()
    assert len(rows) == 1 + 2 * len(speed.UPDATE_SHAPES)  # MAPPO has no padded replay: left out
    assert "| `smax:5m_vs_6m` | qmix | on | 1 | 60% | 90.0 | 45.0 | 2.00x |" in (tmp_path / "updates.md").read_text()


def make_row(implementation, algo, advice, threads, sps, update_ms):
    return {
        "implementation": implementation,
        "algo": algo,
        "advice": advice,
        "threads": threads,
        "env_id": "x",
        "env_steps": 100,
        "env_steps_per_s": sps,
        "update_ms": update_ms,
        "minimal_update_ms": "" if implementation != "ours" else update_ms / 2,
        "peak_rss_mib": 400.0,
        "wall_s": 1.0,
    }


def test_ratios_pair_each_run_with_the_peer_of_its_algo_and_threads(tmp_path, capsys):
    rows = [
        make_row("ours", "qmix", "on", 1, 1000.0, 40.0),
        make_row("ours", "qmix", "off", 1, 3000.0, 10.0),
        make_row("pymarlzooplus", "qmix", "-", 1, 500.0, 30.0),
        make_row("ours", "qmix", "off", 2, 900.0, 5.0),
        make_row("pymarlzooplus", "qmix", "-", 2, 300.0, 20.0),
        make_row("ours", "vdn", "off", 1, 10.0, 1.0),
    ]
    lines = speed.print_ratios(rows)
    assert lines == [
        "cadp_qmix.py advice on  / peer QMIX, threads=1: 2.00x env-steps/s, 0.75x faster updates",
        "cadp_qmix.py advice off / peer QMIX, threads=1: 6.00x env-steps/s, 3.00x faster updates",
        "cadp_qmix.py advice off / peer QMIX, threads=2: 3.00x env-steps/s, 4.00x faster updates",
    ]  # the VDN run has no peer to compare with
    out = tmp_path / "speed.md"
    speed.write_markdown(rows, lines, out)
    text = out.read_text()
    assert "| ours | qmix | off | 1 | 3,000 | 10.0 | 5.0 | 400 |" in text
    assert "| pymarlzooplus | qmix | - | 1 | 500 | 30.0 | - | 400 |" in text
    assert text.rstrip().endswith(lines[-1])
