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
        zh="并行策略",
        zh_help="多进程时：ddp 在每个设备上保留完整模型副本，并对 LoRA 梯度求和；"
        "fsdp（PyTorch FSDP2）将解码层切分到各设备，每个设备只保存 1/N，"
        "用于 bf16 权重单卡放不下的模型（4 位基座会被拒绝：请用 ddp）。",
        advanced=True,
    )
    nnodes: int = field(
        1,
        "Machines taking part. Above 1, Preview command shows the command to run on each other machine.",
        zh="节点数",
        zh_help="参与训练的机器数。大于 1 时，“预览命令”会给出每台其他机器上要运行的命令。",
        advanced=True,
        ge=1,
        le=64,
    )
    node_rank: int = field(
        0,
        "This machine's number among the nodes; the studio runs node 0, the other machines run the shown commands.",
        zh="节点序号",
        zh_help="本机在各节点中的序号；工作室运行 0 号节点，其他机器运行给出的命令。",
        advanced=True,
        ge=0,
    )
    master_addr: str = field(
        "127.0.0.1",
        "Address of node 0 that the other nodes reach (rendezvous); its own address when nnodes > 1.",
        zh="主节点地址",
        zh_help="其他节点访问 0 号节点所用的地址（rendezvous）；nnodes > 1 时填其真实地址。",
        advanced=True,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9.:-]*$",  # a host name or an IP address, never an option
    )
    master_port: int = field(
        29500,
        "TCP port of node 0 for the rendezvous; each concurrent multi-process run needs its own.",
        zh="主节点端口",
        zh_help="0 号节点用于 rendezvous 的 TCP 端口；同时进行的多进程训练各需一个端口。",
        advanced=True,
        ge=1024,
        le=65535,
    )

    @model_validator(mode="after")
    def _node_in_range(self) -> DistributedConfig:
        if self.node_rank >= self.nnodes:
            raise FieldProblem(
                f"node_rank {self.node_rank} must be below nnodes ({self.nnodes})",
                f"node_rank {self.node_rank} 必须小于 nnodes（{self.nnodes}）",
            )
        return self
