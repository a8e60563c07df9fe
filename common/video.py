"""--capture-video: headless drawings of the env families, and the files an episode's frames become.

LBF and RWARE draw themselves only into a pyglet window (a display server), SMAX not at all, so they are drawn
here with Pillow from the env's own state: LBF's grid, food and agent levels; RWARE's shelves (requested ones
highlighted), goals, and agents with their heading and load; SMAX's units (allies blue, enemies red) with their
health and this step's attacks; GRF's pitch, players and ball (its own renderer needs OpenGL and a display).
PettingZoo envs that offer `render_mode="rgb_array"` (mpe2) draw themselves.
Drawing only reads the env: it uses no random numbers, so recorded episodes are the episodes played.

Frames go to an MP4 (H.264, encoded by the ffmpeg binary that the imageio-ffmpeg wheel ships: no system ffmpeg)
and, downscaled, to an animated GIF in TensorBoard's image panel (what torch's add_video writes, without moviepy).
"""

from __future__ import annotations

import io
import math
import os
import warnings

import numpy as np
from PIL import Image, ImageDraw, ImageFont

CELL = 48  # pixels per grid cell (LBF, RWARE)
_WHITE, _GRID = (255, 255, 255), (70, 70, 70)
_AGENT_COLORS = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189), (140, 86, 75)]


def _font(size: int):
    return ImageFont.load_default(size=size)


def _grid_canvas(rows: int, cols: int) -> tuple[Image.Image, ImageDraw.ImageDraw]:
    image = Image.new("RGB", (cols * CELL + 1, rows * CELL + 1), _WHITE)
    draw = ImageDraw.Draw(image)
    for r in range(rows + 1):
        draw.line([(0, r * CELL), (cols * CELL, r * CELL)], fill=_GRID)
    for c in range(cols + 1):
        draw.line([(c * CELL, 0), (c * CELL, rows * CELL)], fill=_GRID)
    return image, draw


def _cell_box(row: int, col: int, pad: int) -> tuple[int, int, int, int]:
    return col * CELL + pad, row * CELL + pad, (col + 1) * CELL - pad, (row + 1) * CELL - pad


def draw_lbf(env) -> np.ndarray:
    """Level-Based Foraging (the unwrapped ForagingEnv): food as apples with their level, agents as numbered
    discs with their level in the corner badge."""
    rows, cols = env.field.shape
    image, draw = _grid_canvas(rows, cols)
    font, small = _font(CELL // 2), _font(CELL // 3)
    for row, col in zip(*np.nonzero(env.field)):
        draw.ellipse(_cell_box(row, col, 8), fill=(200, 30, 40))
        draw.text(((col + 0.5) * CELL, (row + 0.5) * CELL), str(int(env.field[row, col])), _WHITE, font, "mm")
    for i, player in enumerate(env.players):
        if player.position is None:
            continue
        row, col = player.position
        draw.ellipse(_cell_box(row, col, 6), fill=_AGENT_COLORS[i % len(_AGENT_COLORS)])
        draw.text(((col + 0.5) * CELL, (row + 0.5) * CELL), str(i), _WHITE, small, "mm")
        badge = (col + 0.78) * CELL, (row + 0.78) * CELL
        draw.ellipse([badge[0] - 9, badge[1] - 9, badge[0] + 9, badge[1] + 9], fill=_WHITE, outline=_GRID)
        draw.text(badge, str(int(player.level)), (0, 0, 0), small, "mm")
    return np.asarray(image)


def draw_rware(env) -> np.ndarray:
    """Multi-Robot Warehouse (the unwrapped Warehouse): goals dark, shelves blue (requested ones teal), agents as
    discs (red while carrying a shelf) with a line to the side they face."""
    rows, cols = env.grid_size
    image, draw = _grid_canvas(rows, cols)
    font = _font(CELL // 3)
    for x, y in env.goals:
        draw.rectangle(_cell_box(y, x, 1), fill=(60, 60, 60))
    requested = {id(shelf) for shelf in env.request_queue}
    for shelf in env.shelfs:
        color = (0, 150, 136) if id(shelf) in requested else (72, 61, 139)
        draw.rectangle(_cell_box(shelf.y, shelf.x, 5), fill=color)
    # (dx, dy) of rware's Direction values: UP 0, DOWN 1, LEFT 2, RIGHT 3 (y grows downwards)
    heading = {0: (0, -1), 1: (0, 1), 2: (-1, 0), 3: (1, 0)}
    for i, agent in enumerate(env.agents):
        center = (agent.x + 0.5) * CELL, (agent.y + 0.5) * CELL
        color = (214, 39, 40) if agent.carrying_shelf else (255, 140, 0)
        draw.ellipse(_cell_box(agent.y, agent.x, 10), fill=color, outline=(0, 0, 0))
        dx, dy = heading[agent.dir.value]
        draw.line([center, (center[0] + dx * CELL * 0.4, center[1] + dy * CELL * 0.4)], fill=(0, 0, 0), width=3)
        draw.text(center, str(i), (0, 0, 0), font, "mm")
    return np.asarray(image)


SMAX_UNIT_LETTERS = "mMsZzh"  # SMAX's unit types: marine, marauder, stalker, zealot, zergling, hydralisk


def smax_view(positions: np.ndarray, env, margin: float = 3.0) -> tuple[float, float, float, float]:
    """The part of the map to draw for an episode that starts with units at positions (U, 2): around them with
    `margin` map units to spare, at least half as high as wide (SMAX's armies start in two lines facing each
    other across the middle of a 32 x 32 open map), as (left, bottom, width, height); kept for the whole
    episode, so that the picture does not jump."""
    low, high = positions.min(axis=0) - margin, positions.max(axis=0) + margin
    width, height = high - low
    width, height = max(width, height / 2), max(height, width / 2)
    width, height = min(width, env.map_width), min(height, env.map_height)
    center = (low + high) / 2
    left = float(np.clip(center[0] - width / 2, 0, env.map_width - width))
    bottom = float(np.clip(center[1] - height / 2, 0, env.map_height - height))
    return left, bottom, float(width), float(height)


def draw_smax(unit: dict, env, view: tuple[float, float, float, float], width: int = 640) -> np.ndarray:
    """One SMAX env's state: unit[...] are its numpy arrays (positions (U, 2), alive, teams, health, types,
    prev_attack_actions, step); env is the jaxmarl env (unit stats); view: smax_view's part of the map. Allies
    blue, enemies red, as discs of the unit's radius with a health bar and the unit type's letter; a line from
    each unit that attacked this step to its target."""
    left, bottom, view_width, view_height = view
    scale = width / view_width
    height = int(round(view_height * scale))
    image = Image.new("RGB", (width, height), (236, 232, 220))
    draw = ImageDraw.Draw(image)
    font = _font(max(10, int(0.8 * scale)))

    def point(position):  # map coordinates (y up) -> pixels (y down)
        return (position[0] - left) * scale, height - (position[1] - bottom) * scale

    n_allies, moves = env.num_allies, env.num_movement_actions
    for i, action in enumerate(unit["prev_attack_actions"]):
        if action < moves or not unit["alive"][i]:
            continue
        # SMAX numbers each team's targets from its own side: allies' k is enemy k, enemies' k counts down from
        # the last ally (smax_env.py's _world_step)
        target = action - moves + n_allies if i < n_allies else n_allies - 1 - (action - moves)
        color = (30, 80, 220) if i < n_allies else (220, 40, 40)
        draw.line([point(unit["positions"][i]), point(unit["positions"][target])], fill=color, width=2)
    for i, position in enumerate(unit["positions"]):
        x, y = point(position)
        radius = max(float(env.unit_type_radiuses[unit["types"][i]]) * scale, 5)
        if not unit["alive"][i]:
            draw.line([x - radius, y - radius, x + radius, y + radius], fill=(150, 150, 150), width=2)
            draw.line([x - radius, y + radius, x + radius, y - radius], fill=(150, 150, 150), width=2)
            continue
        color = (31, 119, 180) if unit["teams"][i] == 0 else (214, 39, 40)
        draw.ellipse([x - radius, y - radius, x + radius, y + radius], fill=color)
        draw.text((x, y), SMAX_UNIT_LETTERS[unit["types"][i]], _WHITE, font, "mm")
        health = float(unit["health"][i]) / float(env.unit_type_health[unit["types"][i]])
        top = y - radius - 6
        draw.rectangle([x - radius, top, x + radius, top + 3], fill=(90, 90, 90))
        draw.rectangle([x - radius, top, x - radius + 2 * radius * health, top + 3], fill=(40, 200, 60))
    draw.text((6, 6), f"step {int(unit['step'])}", (0, 0, 0), font)
    return np.asarray(image)


def draw_gfootball(observations: list[dict], width: int = 640) -> np.ndarray:
    """One GRF step from its raw observations (one dict per controlled player): the pitch (x in [-1, 1],
    y in [-0.42, 0.42], y down), the left team blue with the players the agents control outlined and numbered,
    the right team red, the ball white (larger the higher it is), and the score and steps left."""
    scale = width / 2.2
    height = int(round(0.84 * scale + 0.2 * scale))
    image = Image.new("RGB", (width, height), (60, 140, 60))
    draw = ImageDraw.Draw(image)
    font = _font(12)

    def point(xy):
        return (xy[0] + 1.1) * scale, (xy[1] + 0.52) * scale

    (x0, y0), (x1, y1) = point((-1, -0.42)), point((1, 0.42))
    draw.rectangle([x0, y0, x1, y1], outline=_WHITE, width=2)
    draw.line([point((0, -0.42)), point((0, 0.42))], fill=_WHITE, width=2)
    for side in (-1, 1):  # the goals
        (gx0, gy0), (gx1, gy1) = point((side, -0.044)), point((side * 1.03, 0.044))
        draw.rectangle([min(gx0, gx1), gy0, max(gx0, gx1), gy1], outline=_WHITE, width=2)
    raw = observations[0]
    controlled = {int(o["active"]): agent for agent, o in enumerate(observations)}  # player index -> agent
    for team, color in (("left_team", (31, 119, 180)), ("right_team", (214, 39, 40))):
        for i, position in enumerate(raw[team]):
            x, y = point(position)
            mine = team == "left_team" and i in controlled
            draw.ellipse([x - 7, y - 7, x + 7, y + 7], fill=color, outline=(255, 230, 0) if mine else None, width=3)
            if mine:
                draw.text((x, y - 14), str(controlled[i]), _WHITE, font, "mm")
    ball = raw["ball"]
    radius = 4 + min(float(ball[2]), 3.0) * 2
    bx, by = point(ball[:2])
    draw.ellipse([bx - radius, by - radius, bx + radius, by + radius], fill=_WHITE, outline=(0, 0, 0))
    score = raw["score"]
    draw.text((6, 4), f"score {score[0]}-{score[1]}   steps left {raw['steps_left']}", _WHITE, font)
    return np.asarray(image)


def _even(frames: list[np.ndarray]) -> np.ndarray:
    """(T, H, W, 3) uint8 with H and W padded to even sizes (H.264 in yuv420p needs them)."""
    video = np.stack(frames).astype(np.uint8)
    _, h, w, _ = video.shape
    return np.pad(video, ((0, 0), (0, h % 2), (0, w % 2), (0, 0)), mode="edge")


def write_mp4(path: str, frames: list[np.ndarray], fps: int) -> str:
    """Encode (H, W, 3) uint8 frames as H.264 MP4 at path (made with its directory); returns path."""
    import imageio_ffmpeg  # imported here: only --capture-video needs it

    video = _even(frames)
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    writer = imageio_ffmpeg.write_frames(
        path, (video.shape[2], video.shape[1]), fps=fps, macro_block_size=1, quality=7, ffmpeg_log_level="error"
    )
    with warnings.catch_warnings():
        # JAX (SMAX) warns at any fork; this one only starts the ffmpeg binary, which shares no threads
        warnings.filterwarnings("ignore", "os.fork", RuntimeWarning)
        writer.send(None)  # start the encoder
    for frame in video:
        writer.send(np.ascontiguousarray(frame))
    writer.close()
    return path


def gif_bytes(frames: list[np.ndarray], fps: int, max_side: int = 256, max_frames: int = 100) -> tuple[bytes, int, int]:
    """An animated GIF of the frames for TensorBoard's preview, downscaled to at most max_side pixels and, for a long
    episode, every k-th frame of it (at most max_frames, shown k times as long; the MP4 has them all):
    (bytes, height, width)."""
    stride = math.ceil(len(frames) / max_frames)
    images = [Image.fromarray(frame) for frame in frames[::stride]]
    factor = min(1.0, max_side / max(images[0].size))
    width, height = (max(1, math.floor(side * factor)) for side in images[0].size)
    images = [image.resize((width, height), Image.Resampling.BILINEAR) for image in images]
    buffer = io.BytesIO()
    duration = int(1000 * stride / fps)
    images[0].save(buffer, "GIF", save_all=True, append_images=images[1:], duration=duration, loop=0)
    return buffer.getvalue(), height, width


def log_video(writer, tag: str, frames: list[np.ndarray], fps: int, global_step: int) -> None:
    """The frames as an animated GIF in TensorBoard's image panel under tag."""
    from tensorboard.compat.proto.summary_pb2 import Summary

    encoded, height, width = gif_bytes(frames, fps)
    image = Summary.Image(height=height, width=width, colorspace=3, encoded_image_string=encoded)
    writer._get_file_writer().add_summary(Summary(value=[Summary.Value(tag=tag, image=image)]), global_step)
