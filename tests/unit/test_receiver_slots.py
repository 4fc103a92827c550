"""The per-receiver cap of a webhook worker (`worker.receiver_slots`)."""

from __future__ import annotations

from worker.receiver_slots import ReceiverSlots


def test_a_receiver_gets_at_most_its_slots_and_others_are_not_held() -> None:
    slots = ReceiverSlots(per_receiver=2)
    assert slots.take("stalled.example") and slots.take("stalled.example")
    assert not slots.take("stalled.example")  # the third waits
    assert slots.take("other.example")  # another receiver is not held by it
    slots.give("stalled.example")
    assert slots.busy("stalled.example") == 1
    assert slots.take("stalled.example")


def test_every_slot_given_back_leaves_nothing_busy() -> None:
    slots = ReceiverSlots(per_receiver=0)  # at least one, whatever the setting says
    assert slots.take("a") and not slots.take("a")
    slots.give("a")
    assert slots.busy("a") == 0 and slots.take("a")
