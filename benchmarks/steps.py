"""The engine side every workload shares: one Adam training step of Trainer.train_step, the code real training runs."""


def adam_step(model, data, loss, batch_size, batch=None):
    """A no-argument closure running one train_step on `batch` (default: the whole of `data`, via the trainer's
    own batching, so encoder–decoders get their teacher-forced inputs); .trainer is the Trainer, whose thread
    choice bench.py applies."""
    import numpy as np

    from engine.project import training_config
    from engine.trainer import Trainer
    tr = Trainer(model, training_config({"loss": loss, "optimizer": "adam", "lr": 1e-3, "batch_size": batch_size}),
                 data)
    batch = batch if batch is not None else tr._batch(data, np.arange(len(data)))
    step = lambda: tr.train_step(*batch)
    step.trainer = tr
    return step
