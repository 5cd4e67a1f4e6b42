#!/usr/bin/env bash
# One-off: what the device's libtorch exports for CUDA graphs and streams, where NVRTC lives, sizeof(CUDAGraph).
set -uo pipefail
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
TL="$(python3 -c 'import torch,os;print(os.path.join(os.path.dirname(torch.__file__),"lib"))')"
INC="$(python3 -c 'import torch,os;print(os.path.join(os.path.dirname(torch.__file__),"include"))')"
{
echo "TL=$TL"; ls $TL
for lib in libtorch_cuda.so libc10_cuda.so; do
  echo "== $lib"
  nm -D --defined-only $TL/$lib | grep -E 'CUDAGraph|CUDAStream|StreamFromPool|StreamFromExternal|CurrentCUDAStream|DefaultCUDAStream|beginAllocateToPool|endAllocateToPool|releasePool' | head -80
  nm -DC --defined-only $TL/$lib | grep -E 'CUDAGraph::|StreamFromPool|StreamFromExternal|CurrentCUDAStream|DefaultCUDAStream' | head -60
done
echo "== headers"; sed -n 1,200p $INC/ATen/cuda/CUDAGraph.h
grep -n "getStreamFromExternal\|setCurrentCUDAStream\|getStreamFromPool\|cudaStream_t stream() const" $INC/c10/cuda/CUDAStream.h
echo "== nvrtc"; find / -name 'libnvrtc*' 2>/dev/null | head; find / -name 'libcuda.so*' 2>/dev/null | head
which g++ gcc nvcc c++; g++ --version | head -1; nvcc --version | tail -2
cat > /tmp/sz.cpp <<'C'
#include <ATen/cuda/CUDAGraph.h>
#include <cstdio>
int main(){ printf("sizeof(CUDAGraph)=%zu alignof=%zu sizeof(CUDAStream)=%zu\n", sizeof(at::cuda::CUDAGraph), alignof(at::cuda::CUDAGraph), sizeof(c10::cuda::CUDAStream)); }
C
g++ -std=c++17 -D_GLIBCXX_USE_CXX11_ABI=1 -I$INC -I$INC/torch/csrc/api/include -I/usr/local/cuda/include /tmp/sz.cpp -o /tmp/sz 2>&1 | tail -5 && /tmp/sz
python3 -c "import torch;print(torch.__version__, torch.version.cuda, torch._C._GLIBCXX_USE_CXX11_ABI)"
} > "$OUT/inventory.txt" 2>&1
tail -c 3000 "$OUT/inventory.txt"
