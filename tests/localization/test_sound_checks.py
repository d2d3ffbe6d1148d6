"""The checks that a localization map follows the sound: pairing and scoring on hand-made maps."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from avlearn.localization.sound_checks import Window, box_mask, pair_scores, pairs


def _window(sounding: str, frame: int = 1) -> Window:
    gt = box_mask([0, 0, 4, 4], 8, 8)
    return Window(gt, [], torch.zeros(3, 2, 8, 8), torch.zeros(10), frame, sounding, None, None)


def test_box_mask_clips_to_the_frame() -> None:
    m = box_mask([-2, 6, 3, 12], 8, 8)
    assert m.sum() == 3 * 2 and m[6:, :3].all()


def test_pairs_join_different_sounding_classes_at_the_same_frame() -> None:
    items = [_window("a"), _window("a"), _window("b"), _window("c", frame=0), _window("a", frame=0)]
    at = {id(w): i for i, w in enumerate(items)}
    assert [(at[id(a)], at[id(b)]) for a, b in pairs(items)] == [(0, 2), (1, 2), (2, 0), (3, 4), (4, 3)]
    assert pairs([_window("a"), _window("a")]) == []


def _peak(row: int, col: int) -> np.ndarray:
    heat = np.zeros((4, 8))  # grid of a side-by-side pair: (H', 2W')
    heat[row, col] = 1.0
    return heat


def test_pair_scores_reward_following_the_sound_and_cap_a_blind_map_at_half() -> None:
    # object A top-left of the left video, object B bottom-right of the right video (8 x 8 frames)
    gts = [(box_mask([0, 0, 4, 4], 8, 8), box_mask([4, 4, 8, 8], 8, 8))] * 3
    follows = pair_scores(gts, [_peak(0, 0)] * 3, [_peak(3, 7)] * 3)
    assert follows == {"pair_pointing": 1.0, "pair_blind": 0.0, "n_pairs": 3}
    blind = pair_scores(gts, [_peak(0, 0)] * 3, [_peak(0, 0)] * 3)  # the same map for both sounds
    assert blind["pair_pointing"] == 0.5 and blind["pair_blind"] == 1.0
    swapped = pair_scores(gts, [_peak(3, 7)] * 3, [_peak(0, 0)] * 3)  # each sound on the other object
    assert swapped["pair_pointing"] == 0.0 and swapped["pair_blind"] == 0.0
    with pytest.raises(ValueError):
        pair_scores(gts, [_peak(0, 0)] * 2, [_peak(0, 0)] * 3)
