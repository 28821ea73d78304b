"""More than one process: how they share the model, and how processes on several machines find each other.

Which devices of this machine train is training.devices."""

from __future__ import annotations

from typing import Literal

from pydantic import model_validator

from studio.config.base import FieldProblem, Section, field


class DistributedConfig(Section):
    strategy: Literal["ddp", "fsdp"] = field(
        "ddp",
        "With more than one process: ddp keeps a whole copy of the model on every device and sums the LoRA "
        "gradients over them; fsdp (PyTorch FSDP2) shards the decoder layers over the devices, each holding "
        "1/N of them, for models whose bf16 weights do not fit one card (a 4-bit base is refused: use ddp).",
        advanced=True,
    )
    nnodes: int = field(
        1,
        "Machines taking part. Above 1, Preview command shows the command to run on each other machine.",
        advanced=True,
        ge=1,
        le=64,
    )
    node_rank: int = field(
        0,
        "This machine's number among the nodes; the studio runs node 0, the other machines run the shown commands.",
        advanced=True,
        ge=0,
    )
    master_addr: str = field(
        "127.0.0.1",
        "Address of node 0 that the other nodes reach (rendezvous); its own address when nnodes > 1.",
        advanced=True,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9.:-]*$",  # a host name or an IP address, never an option
    )
    master_port: int = field(
        29500,
        "TCP port of node 0 for the rendezvous; each concurrent multi-process run needs its own.",
        advanced=True,
        ge=1024,
        le=65535,
    )

    @model_validator(mode="after")
    def _node_in_range(self) -> DistributedConfig:
        if self.node_rank >= self.nnodes:
            raise FieldProblem("config.node_rank_out_of_range", node_rank=self.node_rank, nnodes=self.nnodes)
        return self
