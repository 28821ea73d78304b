from studio.data.tokenize import IGNORE_INDEX, Encoded
from studio.training.batches import StepSchedule, collate, predicted_tokens


def test_each_epoch_visits_every_example_once_and_is_reproducible():
    schedule = StepSchedule(num_examples=11, batch_size=2, accumulation=2, num_epochs=2, max_steps=None, seed=3)
    assert schedule.steps_per_epoch == 3 and schedule.total_steps == 6
    for epoch in range(2):
        seen = [i for step in range(epoch * 3, epoch * 3 + 3) for batch in schedule.micro_batches(step) for i in batch]
        assert sorted(seen) == list(range(11))
    again = StepSchedule(11, 2, 2, 2, None, 3)
    assert [again.micro_batches(s) for s in range(6)] == [schedule.micro_batches(s) for s in range(6)]
    assert schedule.micro_batches(0) != schedule.micro_batches(3)  # reshuffled per epoch


def test_max_steps_wins_over_epochs():
    assert StepSchedule(10, 2, 1, 3, 7, 0).total_steps == 7


def test_collate_pads_and_masks():
    examples = [Encoded([1, 2, 3], [IGNORE_INDEX, 2, 3], False), Encoded([4], [4], False)]
    batch = collate(examples, pad_id=0)
    assert batch["input_ids"].tolist() == [[1, 2, 3], [4, 0, 0]]
    assert batch["labels"].tolist() == [[IGNORE_INDEX, 2, 3], [4, IGNORE_INDEX, IGNORE_INDEX]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0]]
    assert predicted_tokens(examples) == 2  # the first position is never predicted
