"""Each script run for real as a subprocess with a tiny budget, as a user would run it: what it
writes (TensorBoard tags, checkpoint, exported decentralized actor) is what users rely on."""

import json
import re
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest
import torch
from conftest import LBF_ID, MODULES, TINY, final_returns, run_script
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

import cadp_mappo

SMALL = ["--hidden-dim", "16"]
CHECKPOINT_AGENT_KEY = {"cadp_qmix": "agent", "cadp_vdn": "agent", "cadp_qplex": "agent", "cadp_mappo": "actor"}
COMMON_TAGS = {
    "charts/episodic_return",
    "charts/episodic_length",
    "charts/SPS",
    "charts/update_time_ms",
    "charts/self_attention_weight",
    "charts/attention_entropy",
    "charts/prune_coef",
    "losses/prune_loss",
    "losses/grad_norm",
    "eval/centralized_episodic_return",
    "eval/decentralized_episodic_return",
}
Q_LEARNING_TAGS = {"charts/epsilon", "losses/td_loss", "losses/q_values", "losses/target_q_values"}
PPO_TAGS = {
    "charts/learning_rate",
    "losses/policy_loss",
    "losses/value_loss",
    "losses/entropy",
    "losses/approx_kl",
    "losses/clipfrac",
    "losses/explained_variance",
}
SCRIPT_TAGS = {
    "cadp_qmix": Q_LEARNING_TAGS,
    "cadp_vdn": Q_LEARNING_TAGS,
    "cadp_qplex": Q_LEARNING_TAGS | {"losses/attention_reg"},
    "cadp_mappo": PPO_TAGS,
}


# what a deployment machine runs: the exported actor with torch alone (sys.argv: site, actor, inputs, outputs)
DEPLOYED = """
import sys
sys.path.append(sys.argv[1])
import importlib.util
present = [m for m in ("numpy", "gymnasium", "pettingzoo", "tyro", "common", "cadp_qmix", "cadp_vdn", "cadp_qplex",
           "cadp_mappo")
           if importlib.util.find_spec(m)]
assert not present, f"importable on the deployment side: {present}"
import torch
actor = torch.export.load(sys.argv[2]).module()
torch.save(actor(*torch.load(sys.argv[3])), sys.argv[4])
"""


def torch_only_site(directory: Path) -> Path:
    """A site directory holding torch and the installed packages torch itself requires (links), nothing else."""
    directory.mkdir()
    wanted, todo = set(), ["torch"]
    while todo:
        name = re.sub(r"[-_.]+", "-", todo.pop()).lower()
        if name in wanted:
            continue
        try:
            requirements = metadata.requires(name) or []
        except metadata.PackageNotFoundError:  # e.g. a platform's optional dependency
            continue
        wanted.add(name)
        todo += [re.match(r"[A-Za-z0-9_.-]+", text).group() for text in requirements if "extra ==" not in text]
    for name in wanted:
        for top in {file.parts[0] for file in metadata.files(name) if not file.parts[0].endswith((".dist-info", ".."))}:
            source = Path(metadata.distribution(name).locate_file(top))
            if source.exists() and not (directory / top).exists():
                (directory / top).symlink_to(source)
    return directory


def scalars(run_dir: Path) -> EventAccumulator:
    accumulator = EventAccumulator(str(run_dir), size_guidance={"scalars": 0})
    accumulator.Reload()
    return accumulator


@pytest.mark.parametrize("script", list(TINY))
@pytest.mark.parametrize("placement", ["post-gru", "gru-input"])
def test_training_run_writes_tags_checkpoint_and_a_faithful_exported_actor(script, placement, tmp_path):
    result = run_script(
        script,
        tmp_path,
        "--env-id",
        LBF_ID,
        "--total-timesteps",
        "1200",
        "--num-envs",
        "4",
        "--eval-interval",
        "600",
        "--eval-episodes",
        "2",
        "--prune-start-fraction",
        "0.3",
        "--save-model",
        "--capture-video",
        "--advice-placement",
        placement,
        *TINY[script],
        *SMALL,
    )
    final_returns(result)
    (run_dir,) = (tmp_path / "runs").iterdir()
    assert run_dir.name.startswith("lbforaging-Foraging-8x8-2p-3f-v3__" + script + "__1__")
    logged = scalars(run_dir)
    missing = (COMMON_TAGS | SCRIPT_TAGS[script]) - set(logged.Tags()["scalars"])
    assert not missing, f"tags not written: {missing}"
    entropies = [event.value for event in logged.Scalars("charts/attention_entropy")]
    assert all(0.0 <= value <= 1.0 + 1e-6 for value in entropies), entropies  # a share of log(agents)
    assert entropies[0] > 0.5, entropies  # a fresh attention is near uniform, before any pruning
    # --capture-video: each evaluation's first episode of both models, as MP4 and in TensorBoard's image panel
    videos = {path.name for path in (run_dir / "videos").iterdir()}
    final = max(int(name.split("_")[0]) for name in videos)
    assert final >= 1200 and {f"{final}_centralized.mp4", f"{final}_decentralized.mp4"} <= videos, videos
    accumulator = EventAccumulator(str(run_dir), size_guidance={"images": 0})
    accumulator.Reload()
    gif = accumulator.Images("eval/decentralized_video")[-1]
    assert gif.encoded_image_string.startswith(b"GIF89a") and "eval/centralized_video" in accumulator.Tags()["images"]

    module = MODULES[script]
    checkpoint = torch.load(run_dir / f"{script}.cadp_model", weights_only=False)
    assert checkpoint["global_step"] >= 1200
    spec = json.loads((run_dir / "decentralized_actor.json").read_text())
    args = module.Args(**checkpoint["args"])
    assert args.advice_placement == placement
    agent = module.CADPAgent(spec["obs_dim"], spec["n_actions"], args)
    agent.load_state_dict(checkpoint[CHECKPOINT_AGENT_KEY[script]])
    expected_layout = (
        ["env_observation"] + ["agent_id_onehot"] * args.obs_agent_id + ["last_action_onehot"] * args.obs_last_action
    )
    assert [name for name, _ in spec["observation_layout"]] == expected_layout

    exported = torch.export.load(run_dir / "decentralized_actor.pt2").module()
    assert not any("query" in name or "key" in name for name in exported.state_dict())
    assert spec["action_mask"].startswith("LBF's own valid-action sets")
    n_agents, hidden_dim = spec["n_agents"], spec["hidden_dim"]
    obs = torch.randn(5, n_agents, spec["obs_dim"])
    hidden = torch.randn(5, n_agents, hidden_dim)
    avail = torch.rand(5, n_agents, spec["n_actions"]) < 0.7
    avail[..., 0] = True
    with torch.no_grad():
        expected_q, expected_hidden, _ = agent(obs.unsqueeze(1), hidden, decentralized=True)
        # each agent alone: only its own observation, hidden state and mask go in
        steps = [exported(obs[:, i], hidden[:, i], avail[:, i]) for i in range(n_agents)]
    q, new_hidden = (torch.stack(outputs, dim=1) for outputs in zip(*steps))
    torch.testing.assert_close(q, expected_q[:, 0].masked_fill(~avail, -torch.inf))
    torch.testing.assert_close(new_hidden, expected_hidden)

    # deployed: a fresh interpreter without site-packages, given torch alone, runs the same actor on
    # agent 0's rows, alone and then in one batch with rows of other agents that it must not mix in
    changed = torch.randn_like(obs[:, 1])
    torch.save(
        (torch.cat([obs[:, 0], obs[:, 0], changed]), torch.cat([hidden[:, 0]] * 3), torch.cat([avail[:, 0]] * 3)),
        tmp_path / "inputs.pt",
    )
    deployed = subprocess.run(
        [
            sys.executable,
            "-S",
            "-E",
            "-c",
            DEPLOYED,
            str(torch_only_site(tmp_path / "site")),
            str(run_dir / "decentralized_actor.pt2"),
            "inputs.pt",
            "outputs.pt",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert deployed.returncode == 0, deployed.stderr[-3000:]
    deployed_q, deployed_hidden = torch.load(tmp_path / "outputs.pt")
    torch.testing.assert_close(deployed_q[:5], q[:, 0])
    torch.testing.assert_close(deployed_hidden[:5], new_hidden[:, 0])
    torch.testing.assert_close(deployed_q[5:10], q[:, 0])
    assert not torch.allclose(deployed_hidden[10:], new_hidden[:, 0])


def deployment_example() -> str:
    """The Python block of docs/deploy.md that follows its `<!-- deploy-example -->` marker."""
    page = (Path(__file__).resolve().parents[1] / "docs" / "deploy.md").read_text()
    return page.split("<!-- deploy-example -->\n```python\n", 1)[1].split("\n```", 1)[0]


@pytest.mark.filterwarnings("ignore:.*reward returned by `step\\(\\)` must be")  # LBF's per-agent rewards
@pytest.mark.parametrize("script", list(TINY))
def test_deployment_example_plays_real_lbf_episodes_as_the_scripts_own_evaluation(script, tmp_path):
    """docs/deploy.md's example drives the exported actor on plain gymnasium LBF, outside our env layer: its
    episodes must score what the script's greedy CADP(D) evaluation of the same weights scores, and
    they do only with LBF's available-action mask."""
    from common.run import export_actor
    from common.vec_env import make_vec_env

    module = MODULES[script]
    args = module.Args()
    eval_envs = make_vec_env(
        LBF_ID, 32, args.seed + 100_000, agent_id_feature=args.obs_agent_id, last_action_feature=args.obs_last_action
    )
    torch.manual_seed(2)  # untrained weights that collect some food
    agent = module.CADPAgent(eval_envs.obs_dim, eval_envs.n_actions, args)
    outputs = "logits" if module is cadp_mappo else "q_values"
    export_actor(agent, eval_envs, args.hidden_dim, str(tmp_path), outputs)
    greedy = (True,) if module is cadp_mappo else ()
    expected = module.evaluate(agent, eval_envs, args.hidden_dim, "cpu", True, *greedy)[0]
    eval_envs.close()
    assert expected > 0

    example = deployment_example().replace('"runs/<run_name>"', repr(str(tmp_path)))
    played = {}
    exec(compile(example, "docs/deploy.md (deploy example)", "exec"), played)
    assert sum(played["returns"]) / len(played["returns"]) == pytest.approx(expected, abs=1e-6)

    unmasked = example.replace("lbf_available(env, i)[None]", "torch.ones(1, n_actions, dtype=torch.bool)")
    assert unmasked != example
    played_unmasked = {}
    exec(compile(unmasked, "docs/deploy.md (deploy example, unmasked)", "exec"), played_unmasked)
    assert played_unmasked["returns"] != played["returns"]


@pytest.mark.parametrize("script", list(TINY))
@pytest.mark.parametrize("env_id", ["rware:rware-tiny-2ag-v2", "mpe2:simple_speaker_listener_v4"])
def test_script_runs_unchanged_on_other_env_families(script, env_id, tmp_path):
    result = run_script(
        script,
        tmp_path,
        "--env-id",
        env_id,
        "--total-timesteps",
        "1100",
        "--num-envs",
        "2",
        "--eval-interval",
        "1000",
        "--eval-episodes",
        "1",
        *TINY[script],
        *SMALL,
    )
    final_returns(result)


@pytest.mark.parametrize("script", list(TINY))
def test_unknown_env_id_is_one_clear_line(script, tmp_path):
    result = run_script(script, tmp_path, "--env-id", "lbforaging:Foraging-9x9-nope-v3", timeout=60)
    assert result.returncode != 0
    assert result.stderr.strip().startswith("error:"), result.stderr
    assert "Traceback" not in result.stderr
