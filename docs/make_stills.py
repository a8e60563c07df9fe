"""The still frames in README's "Watch the agents": one short `--capture-video` run per env family, then a frame
from the middle of its last CADP(D) video, as a small PNG in docs/img/.

    python docs/make_stills.py            # all families (SMAX and GRF with their extras installed)
    python docs/make_stills.py lbf rware  # some of them

The runs are short (the stills show what a video looks like, not a trained policy); each writes its run
directory under a temporary directory, which is removed.
"""

import subprocess
import sys
import tempfile
from pathlib import Path

import imageio_ffmpeg
import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
SHORT = ["--eval-episodes", "2", "--capture-video", "--checkpoint-interval", "0"]
COMMANDS = {
    "lbf": ["cadp_qmix.py", "--total-timesteps", "20000", "--eval-interval", "20000", *SHORT],
    "rware": ["cadp_qmix.py", "--env-id", "rware:rware-tiny-2ag-v2", "--total-timesteps", "5000", *SHORT],
    "mpe2": ["cadp_mappo.py", "--env-id", "mpe2:simple_spread_v3", "--total-timesteps", "20000", *SHORT],
    "smax": ["cadp_qmix.py", "--env-id", "smax:3m", "--total-timesteps", "5000", *SHORT],
    "gfootball": [
        "cadp_qmix.py",
        "--env-id",
        "gfootball:academy_3_vs_1_with_keeper",
        "--total-timesteps",
        "2000",
        *SHORT,
    ],
}


def middle_frame(path: Path) -> np.ndarray:
    reader = imageio_ffmpeg.read_frames(str(path))
    width, height = next(reader)["size"]
    frames = [np.frombuffer(frame, np.uint8).reshape(height, width, 3) for frame in reader]
    return frames[len(frames) // 2]


def main(families: list[str]) -> None:
    (ROOT / "docs" / "img").mkdir(exist_ok=True)
    for family in families:
        with tempfile.TemporaryDirectory() as directory:
            command = [sys.executable, str(ROOT / COMMANDS[family][0]), *COMMANDS[family][1:]]
            subprocess.run(command, cwd=directory, check=True, stdout=subprocess.DEVNULL)
            videos = sorted(
                Path(directory).glob("runs/*/videos/*_decentralized.mp4"), key=lambda p: int(p.stem.split("_")[0])
            )
            image = Image.fromarray(middle_frame(videos[-1]))
            image.thumbnail((240, 240), Image.Resampling.LANCZOS)
            out = ROOT / "docs" / "img" / f"still_{family}.png"
            image.save(out, optimize=True)
            print(f"{family}: {' '.join(['python', *COMMANDS[family]])} -> {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main(sys.argv[1:] or list(COMMANDS))
