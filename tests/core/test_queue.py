"""The run queue's file: it round-trips, keeps its order through moves, and a damaged one is read tolerantly."""

from __future__ import annotations

import json

from perceiver_gui.config import preset
from perceiver_gui.core.queue import RunQueue, queue_file, read_queue
from perceiver_gui.core.stats import seed_configs


def _queue(tmp_path):
    return RunQueue(queue_file(tmp_path / "runs"))


def test_the_queue_round_trips_through_its_file(tmp_path):
    queue = _queue(tmp_path)
    assert queue.entries == [] and queue.problems == []
    lr = preset("digits").with_updates({"train.lr": 0.02, "name": "fast"})
    added = queue.add([lr, *seed_configs(preset("digits"), 2)])
    queue.update(added[1].id, state="failed", run_dir="/somewhere", message="It diverged.")
    queue.set_paused(True)

    again = _queue(tmp_path)
    assert again.entries == queue.entries and again.paused and again.problems == []
    assert again.entries[0].config == lr
    assert [e.config.train.seed for e in again.entries[1:]] == [0, 1]
    assert again.entries[1].state == "failed" and again.entries[1].message == "It diverged."
    assert again.next_waiting() == again.entries[0]


def test_reorder_remove_and_clear_finished(tmp_path):
    queue = _queue(tmp_path)
    a, b, c = queue.add(seed_configs(preset("digits"), 3))
    queue.move(c.id, -1)
    queue.move(a.id, -5)  # stays first
    assert [e.id for e in _queue(tmp_path).entries] == [a.id, c.id, b.id]
    queue.move(a.id, +1)
    assert [e.id for e in queue.entries] == [c.id, a.id, b.id]
    queue.remove(c.id)
    queue.update(a.id, state="completed")
    queue.clear_finished()
    assert [e.id for e in _queue(tmp_path).entries] == [b.id]


def test_a_run_that_was_running_when_the_app_quit_comes_back_interrupted(tmp_path):
    queue = _queue(tmp_path)
    (entry,) = queue.add([preset("digits")])
    queue.update(entry.id, state="running", run_dir="/runs/x")
    (back,) = _queue(tmp_path).entries
    assert back.state == "interrupted" and back.run_dir == "/runs/x"
    assert _queue(tmp_path).next_waiting() is None  # never started again by itself


def test_a_damaged_entry_is_named_and_skipped_and_the_rest_is_read(tmp_path):
    queue = _queue(tmp_path)
    good, other = queue.add(seed_configs(preset("digits"), 2))
    raw = json.loads(queue.path.read_text())
    bad_config = json.loads(json.dumps(raw["entries"][0]))
    bad_config["id"] = "x1"
    bad_config["config"]["train"]["lr"] = "fast"
    raw["entries"] = [raw["entries"][0], "junk", bad_config, {**raw["entries"][1], "state": "dancing"},
                      raw["entries"][0], raw["entries"][1]]
    queue.path.write_text(json.dumps(raw))

    back = _queue(tmp_path)
    assert [e.id for e in back.entries] == [good.id, other.id]
    assert len(back.problems) == 4
    assert back.problems[0] == "The run queue's entry 2 is not a table of fields; it was skipped."
    assert back.problems[1] == ("The run queue's entry 3: its settings can't be used (train.lr must be a float, "
                                "not 'fast'); it was skipped.")
    assert "entry 4: state 'dancing' is not one of" in back.problems[2]
    assert back.problems[3] == "The run queue's entry 5 repeats an earlier id; it was skipped."


def test_a_file_that_is_not_a_queue_is_set_aside_and_the_queue_starts_empty(tmp_path):
    path = queue_file(tmp_path)
    path.write_text('{"entries": [ cut off')
    entries, paused, problems = read_queue(path)
    assert entries == [] and paused
    (problem,) = problems
    assert "is damaged (not a queue file); it starts empty" in problem
    (aside,) = tmp_path.glob("queue-damaged-*.json")
    assert aside.read_text() == '{"entries": [ cut off' and not path.exists()
    assert read_queue(tmp_path / "none.json") == ([], False, [])
