using static TorchSharp.torch;
using Parameter = TorchSharp.Modules.Parameter;

namespace Meteora.Llama;

/// <summary>
/// Makes module parameters that belong to the module, not to whatever dispose scope is active when the model is
/// built (TorchSharp would otherwise hand a scope-owned tensor's parameter back to that scope, which frees it
/// when the scope ends).
/// </summary>
internal static class ModelParameter
{
    /// <summary>Wraps <paramref name="data"/> (which is consumed) as a parameter owned by no dispose scope.</summary>
    public static Parameter Create(Tensor data, bool requiresGrad = false)
    {
        data.DetachFromDisposeScope();
        return new Parameter(data, requires_grad: requiresGrad);
    }
}
