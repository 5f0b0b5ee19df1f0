#!/usr/bin/env python3
"""Peer line counter for the Passage counting benchmark: Roboflow supervision's ByteTrack
and LineZone run over the same detections as Passage's own tracker and counter.

Input (a path argument, or stdin when the path is absent or "-"): JSON lines, one per video
frame, as the Rust side writes them:

    {"frame":n,"width":768,"height":576,"detections":[{"x1":..,"y1":..,"x2":..,"y2":..,"score":..},...]}

boxes in pixels. Every frame goes through sv.ByteTrack (frame_rate 10 unless --fps), frames
without detections included; a gap in the frame numbers is filled with empty frames so the
tracker ages its tracks as it would on the video. The tracked boxes go to one sv.LineZone per
--line, triggered by the bottom centre of the box (the feet).

Output, one JSON line on stdout:

    {"lines":[{"in":N,"out":M},...],"frames":F,"supervision":"<version>"}

in the order of the --line options; F is the number of frames given to the tracker.

Line convention (Passage's, also tests/data/vtest-ground-truth.json): --line X1,Y1,X2,Y2 is
directed from A=(X1,Y1) to B=(X2,Y2) in image coordinates (y down); for the reference point P,
cross = (bx-ax)*(py-ay) - (by-ay)*(px-ax); P going from cross<0 to cross>0 is "in", from >0 to
<0 is "out". For a horizontal line drawn left to right, walking down the image is "in".

supervision's own orientation is the opposite. LineZone calls an anchor with cross < 0 (same
cross product, supervision/detection/line_zone.py: `cross_product(all_anchors, self.vector) < 0`)
the "left" side and counts a move onto that side as in_count. So a box walking down across a
horizontal left-to-right line is supervision's OUT and Passage's IN, checked with a synthetic
box in supervision 0.30.9 (and 0.29.1; benches/peer/requirements.txt pins 0.30.9):

    Passage "in"  = sv.LineZone.out_count
    Passage "out" = sv.LineZone.in_count

The script does not trust this blindly: at start-up it moves a synthetic tracked box down
across a horizontal left-to-right LineZone and takes the mapping from what LineZone reports,
and it stops with an error if LineZone reports anything but one crossing.

Differences from Passage's counter worth knowing when comparing (supervision 0.30.9):
LineZone only sees boxes ByteTrack returns (confirmed tracks with an id); it counts when a
track's anchor is seen on the other side from the side it last confirmed
(minimum_crossing_threshold 1: one update there is enough), only while the anchor lies in the
strip perpendicular to the segment (not an exact segment intersection test); and it forgets a
track's side once the track has been missing from 2 consecutive updates, so a crossing made
while ByteTrack loses the person for 2 or more frames is not counted.

Why supervision 0.30.9 and not the newest: sv.ByteTrack is deprecated since 0.28 and was
removed in 0.31.0 (its successor is ByteTrackTracker in Roboflow's separate `trackers`
package); 0.30.9 is the last release with both sv.ByteTrack and sv.LineZone. Its deprecation
warning is silenced below, as is the notice that opencv-python is absent (supervision then
uses NumPy for drawing; tracking and counting do not use OpenCV). The venv: scripts/peer-venv
(creates .cache/peer-venv from benches/peer/requirements.txt).
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings

warnings.filterwarnings("ignore", category=FutureWarning)
warnings.filterwarnings("ignore", category=DeprecationWarning)
warnings.filterwarnings("ignore", message=".*OpenCV.*", category=UserWarning)

import numpy as np  # noqa: E402
import supervision as sv  # noqa: E402

ANCHORS = [sv.Position.BOTTOM_CENTER]


def parse_line(text: str) -> tuple[float, float, float, float]:
    parts = text.split(",")
    if len(parts) != 4:
        raise argparse.ArgumentTypeError(f"--line wants X1,Y1,X2,Y2, got {text!r}")
    try:
        x1, y1, x2, y2 = (float(p) for p in parts)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--line wants four numbers, got {text!r}") from None
    if (x1, y1) == (x2, y2):
        raise argparse.ArgumentTypeError(f"--line has zero length: {text!r}")
    return x1, y1, x2, y2


def to_detections(boxes: list[dict]) -> sv.Detections:
    n = len(boxes)
    xyxy = np.array([[b["x1"], b["y1"], b["x2"], b["y2"]] for b in boxes], dtype=np.float32)
    return sv.Detections(
        xyxy=xyxy.reshape(n, 4),
        confidence=np.array([b["score"] for b in boxes], dtype=np.float32).reshape(n),
        class_id=np.zeros(n, dtype=int),
    )


def sv_counts_our_in_as() -> str:
    """Which LineZone count a Passage "in" lands in: 'in_count' or 'out_count'. Moves one
    tracked box (bottom centre x=50) down from y=40 to y=60 across the line (0,50)->(100,50),
    which is "in" by Passage's convention."""
    zone = sv.LineZone(start=sv.Point(0, 50), end=sv.Point(100, 50), triggering_anchors=ANCHORS)
    for bottom in (40.0, 60.0):
        det = sv.Detections(
            xyxy=np.array([[40.0, bottom - 20.0, 60.0, bottom]], dtype=np.float32),
            confidence=np.array([0.9], dtype=np.float32),
            class_id=np.array([0]),
            tracker_id=np.array([1]),
        )
        zone.trigger(det)
    if (zone.in_count, zone.out_count) == (0, 1):
        return "out_count"
    if (zone.in_count, zone.out_count) == (1, 0):
        return "in_count"
    sys.exit(
        f"supervision_linezone: LineZone orientation probe gave in={zone.in_count} "
        f"out={zone.out_count}, expected exactly one crossing"
    )


def main() -> None:
    ap = argparse.ArgumentParser(
        description="Count line crossings with supervision's ByteTrack and LineZone "
        "(Passage's in/out convention)."
    )
    ap.add_argument("input", nargs="?", default="-", help="JSON-lines file; stdin if - or absent")
    ap.add_argument(
        "--line",
        action="append",
        type=parse_line,
        required=True,
        metavar="X1,Y1,X2,Y2",
        help="directed counting line in pixels (repeatable)",
    )
    ap.add_argument("--fps", type=float, default=10.0, help="frame rate for ByteTrack (default 10)")
    args = ap.parse_args()

    our_in = sv_counts_our_in_as()
    our_out = "in_count" if our_in == "out_count" else "out_count"

    tracker = sv.ByteTrack(frame_rate=args.fps)
    zones = [
        sv.LineZone(start=sv.Point(x1, y1), end=sv.Point(x2, y2), triggering_anchors=ANCHORS)
        for (x1, y1, x2, y2) in args.line
    ]

    def step(detections: sv.Detections) -> None:
        tracked = tracker.update_with_detections(detections)
        for zone in zones:
            zone.trigger(tracked)

    stream = sys.stdin if args.input == "-" else open(args.input, encoding="utf-8")
    frames = 0
    last_frame: int | None = None
    with stream:
        for lineno, raw in enumerate(stream, 1):
            if not raw.strip():
                continue
            try:
                record = json.loads(raw)
                frame = int(record["frame"])
                boxes = record["detections"]
            except (ValueError, KeyError, TypeError) as err:
                sys.exit(f"supervision_linezone: input line {lineno}: {err}")
            if last_frame is not None:
                if frame <= last_frame:
                    sys.exit(
                        f"supervision_linezone: input line {lineno}: frame {frame} after "
                        f"{last_frame}; frames must increase"
                    )
                for _ in range(frame - last_frame - 1):
                    step(to_detections([]))
                    frames += 1
            step(to_detections(boxes))
            frames += 1
            last_frame = frame

    result = {
        "lines": [{"in": getattr(z, our_in), "out": getattr(z, our_out)} for z in zones],
        "frames": frames,
        "supervision": sv.__version__,
    }
    print(json.dumps(result, separators=(",", ":")))


if __name__ == "__main__":
    main()
