# AE Lab on a CPU-only container host: torch from PyTorch's CPU wheels (requirements-cpu.txt, no CUDA, no
# torchvision) and the hosted profile's limits per visitor. See docs/hosting.md.
#   docker build -t ae-lab .
#   docker run --rm -p 8501:8501 ae-lab                                   # http://localhost:8501
#   docker run --rm -p 8501:8501 -v /path/to/mnist:/data:ro -e AECORE_DATA_DIR=/data ae-lab   # with MNIST
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    AELAB_PROFILE=hosted

WORKDIR /app
# Dependencies before the code, so a code change reuses this (large) layer.
COPY requirements-cpu.txt .
RUN pip install -r requirements-cpu.txt

COPY . .
# Not root; the home folder is writable for caches (downloaded data sets go under ~/.cache/aelab).
RUN useradd --create-home aelab
USER aelab

EXPOSE 8501
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s \
    CMD python -c "import urllib.request; urllib.request.urlopen('http://localhost:8501/_stcore/health', timeout=4)"
CMD ["streamlit", "run", "app.py", "--server.address", "0.0.0.0", "--server.port", "8501"]
