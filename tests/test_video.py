"""--capture-video: the recorded episode is the one played (drawing changes nothing), it is drawn for every
env family that can draw itself, its MP4 decodes, and a saved model's episodes can be recorded."""

import importlib.util
import subprocess
import sys

import imageio_ffmpeg
import numpy as np
import pytest
from conftest import LBF_ID, ROOT, TINY, final_returns, run_script

from common.cli import EnvError
from common.envs import make_env
from common.vec_env import make_vec_env
from common.video import write_mp4

FAMILIES = [LBF_ID, "rware:rware-tiny-2ag-v2", "mpe2:simple_spread_v3"]
HAS_SMAX = importlib.util.find_spec("jaxmarl") is not None


def play(env_id: str, capture_video: bool, steps: int = 60, num_envs: int = 3):
    """Random available actions (same seed each call) from a seeded reset: every array the envs returned."""
    env_kwargs = {"max_steps": 40} if env_id.startswith("rware") else None  # an episode within the steps played
    envs = make_vec_env(env_id, num_envs, seed=7, capture_video=capture_video, env_kwargs=env_kwargs)
    rng = np.random.default_rng(0)
    obs, state, avail = envs.reset(seed=100)
    played = [(obs, state, avail)]
    for _ in range(steps):
        actions = np.array([[rng.choice(np.flatnonzero(a)) for a in env_avail] for env_avail in avail])
        obs, state, avail, reward, terminated, truncated, info = envs.step(actions)
        played.append((obs, state, avail, reward, terminated, truncated, info["episode_return"]))
    return envs, played


def first_episode_length(played) -> int:
    return next(t for t, step in enumerate(played[1:], 1) if step[4][0] or step[5][0])


def decoded_frames(path) -> list[np.ndarray]:
    reader = imageio_ffmpeg.read_frames(str(path))
    width, height = next(reader)["size"]
    return [np.frombuffer(frame, np.uint8).reshape(height, width, 3) for frame in reader]


def assert_same_play(with_video, without_video):
    assert len(with_video) == len(without_video)
    for step_with, step_without in zip(with_video, without_video):
        for a, b in zip(step_with, step_without):
            np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("env_id", FAMILIES)
def test_recorded_episode_is_the_played_one_and_its_mp4_decodes(env_id, tmp_path):
    envs, recorded = play(env_id, capture_video=True)
    _, plain = play(env_id, capture_video=False)
    assert_same_play(recorded, plain)  # drawing uses no random numbers and changes no state

    # a frame from the reset to the first episode's last step, of env 0 only, then nothing more
    assert len(envs.frames) == first_episode_length(recorded) + 1
    height, width, channels = envs.frames[0].shape
    assert channels == 3 and envs.frames[0].dtype == np.uint8 and min(height, width) >= 200
    changed = sum(not np.array_equal(a, b) for a, b in zip(envs.frames, envs.frames[1:]))
    assert changed >= len(envs.frames) // 2, "the frames hardly change over the episode"

    path = write_mp4(str(tmp_path / "videos" / "episode.mp4"), envs.frames, envs.render_fps)
    frames = decoded_frames(path)
    assert len(frames) == len(envs.frames)
    assert frames[0].shape[:2] == (height + height % 2, width + width % 2)  # padded to even sizes
    # lossy, but close to what was drawn, and still changing over the episode
    assert np.abs(frames[-1][:height, :width].astype(int) - envs.frames[-1]).mean() < 8
    assert not np.array_equal(frames[0], frames[-1])


@pytest.mark.skipif(not HAS_SMAX, reason="needs the SMAX extra (requirements-smax.txt)")
def test_smax_draws_3m_from_its_game_state():
    # (no replay without the flag here: that would compile SMAX twice; the recording variant of the step only
    # returns the states before the auto-reset as well)
    envs, recorded = play("smax:3m", capture_video=True, steps=40, num_envs=1)
    assert len(envs.frames) == first_episode_length(recorded) + 1
    first, last = envs.frames[0], envs.frames[-1]
    assert first.shape[1:] == (640, 3) and 320 <= first.shape[0] <= 640
    blue = (first[..., 2] > 150) & (first[..., 0] < 80)  # allies
    red = (first[..., 0] > 180) & (first[..., 1] < 80)  # enemies
    assert blue.sum() > 50 and red.sum() > 50, "units are not drawn"
    assert not np.array_equal(first, last)


def test_an_env_that_cannot_draw_itself_says_so_in_one_line():
    with pytest.raises(EnvError, match="matrix game has no picture.*drop --capture-video"):
        make_env("matrix:climbing", render=True)


def test_the_flag_leaves_the_evaluation_unchanged_and_records_a_saved_model(tmp_path):
    flags = ["--total-timesteps", "600", "--num-envs", "4", "--eval-interval", "300", "--eval-episodes", "3"]
    flags += [*TINY["cadp_vdn"], "--save-model"]
    (tmp_path / "plain").mkdir(), (tmp_path / "recorded").mkdir()
    plain = run_script("cadp_vdn", tmp_path / "plain", *flags)
    recorded = run_script("cadp_vdn", tmp_path / "recorded", *flags, "--capture-video")
    assert final_returns(recorded) == final_returns(plain)
    (run_dir,) = (tmp_path / "recorded" / "runs").iterdir()
    videos = sorted(path.name for path in (run_dir / "videos").iterdir())
    steps = sorted({int(name.split("_")[0]) for name in videos})
    assert steps[-1] >= 600 and len(steps) >= 3  # every evaluation, the first one before training
    assert videos == sorted(f"{step}_{mode}.mp4" for step in steps for mode in ("centralized", "decentralized"))
    assert not (tmp_path / "plain" / "runs" / run_dir.name / "videos").exists()

    # --eval-only a saved model: its episodes recorded beside it, the same first episode as at the end of training
    model = run_dir / "cadp_vdn.cadp_model"
    evaluated = run_script("cadp_vdn", tmp_path, "--eval-only", str(model), "--capture-video", "--eval-episodes", "3")
    assert evaluated.returncode == 0, evaluated.stderr[-2000:]
    for mode in ("centralized", "decentralized"):
        path = run_dir / "videos" / f"eval_only_{steps[-1]}_{mode}.mp4"
        assert str(path.relative_to(tmp_path)) in evaluated.stdout
        assert len(decoded_frames(path)) == len(decoded_frames(run_dir / "videos" / f"{steps[-1]}_{mode}.mp4"))


@pytest.mark.parametrize("script", ["cadp_qmix", "cadp_mappo"])
def test_capture_video_on_a_matrix_game_is_one_clear_line(script, tmp_path):
    result = run_script(script, tmp_path, "--env-id", "matrix:climbing", "--capture-video", timeout=60)
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert lines[-1].startswith("error:") and "drop --capture-video" in lines[-1], result.stderr
    assert "Traceback" not in result.stderr


def test_the_cost_benchmark_measures_a_recorded_evaluation(tmp_path):
    out = tmp_path / "video_cost.md"
    command = ["--families", LBF_ID, "--repeats", "1", "--eval-episodes", "2", "--out", str(out)]
    result = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "video_cost.py"), *command], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr[-2000:]
    (row,) = [line for line in out.read_text().splitlines() if line.startswith(f"| {LBF_ID} |")]
    frames, plain, recorded, ratio = row.split("|")[2:6]
    assert int(frames) >= 2 and float(plain) > 0 and float(recorded) > 0 and float(ratio) > 0
