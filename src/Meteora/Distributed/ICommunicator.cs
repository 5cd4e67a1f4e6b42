using static TorchSharp.torch;

namespace Meteora.Distributed;

/// <summary>
/// The collectives data-parallel training needs, across the ranks of one job (DESIGN.md "Distributed"): every rank
/// calls each operation in the same order with tensors of the same shape and dtype. Two implementations:
/// <see cref="NcclCommunicator"/> for GPUs (one process each, launched by torchrun) and <see cref="InProcessGroup"/>
/// (threads of one process) for CPU tests.
/// </summary>
public interface ICommunicator : IDisposable
{
    /// <summary>This rank, 0 … <see cref="WorldSize"/> − 1.</summary>
    int Rank { get; }

    /// <summary>The number of ranks.</summary>
    int WorldSize { get; }

    /// <summary>Replaces <paramref name="tensor"/> on every rank with the element-wise sum over all ranks.</summary>
    void AllReduceSum(Tensor tensor);

    /// <summary>Replaces <paramref name="tensor"/> on every rank with rank <paramref name="root"/>'s.</summary>
    void Broadcast(Tensor tensor, int root = 0);

    /// <summary>Returns once every rank has called it.</summary>
    void Barrier();
}
