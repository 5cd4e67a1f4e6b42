# Sourced on a GPU machine: point TorchSharp at the libtorch that ships inside the machine's PyTorch.
TORCH_LIB="$(python3 -c 'import torch,os;print(os.path.join(os.path.dirname(torch.__file__),"lib"))')"
export LD_LIBRARY_PATH="$TORCH_LIB${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export DOTNET_CLI_TELEMETRY_OPTOUT=1
