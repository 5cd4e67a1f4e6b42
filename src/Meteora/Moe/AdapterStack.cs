using Meteora.Llama;
using Meteora.Lora;
using static TorchSharp.torch;
using Parameter = TorchSharp.Modules.Parameter;

namespace Meteora.Moe;

/// <summary>
/// The N adapters of one projection, stacked once at load in the model dtype: <c>A_all (ΣR, in)</c> with each
/// adapter's scale folded in, <c>B_all (out, ΣR)</c>, and each adapter's row offset and rank. Adapters that do
/// not target the projection have rank 0 here (they contribute zero). Strategies read views of these tensors;
/// <c>gather</c> needs them as (L, r, in) / (L, out, r): views when all ranks are equal, zero-padded copies
/// (built on first use) when they differ.
/// </summary>
internal sealed class AdapterStack : IDisposable
{
    public int Count { get; }
    public int[] Ranks { get; }
    public int[] Offsets { get; }
    public int TotalRank { get; }
    /// <summary>The rank every adapter has here, or null when ranks differ or an adapter is absent.</summary>
    public int? UniformRank { get; }
    /// <summary>(ΣR, in), scales folded in. A parameter so that gate training can also train the adapters.</summary>
    public Parameter A { get; }
    /// <summary>(out, ΣR).</summary>
    public Parameter B { get; }
    /// <summary>Each adapter's scale (folded into <see cref="A"/>).</summary>
    public double[] Scales { get; }
    /// <summary>(ΣR,) int64: the adapter that owns each stacked rank row.</summary>
    public Tensor Owner { get; }

    private Tensor? _paddedA, _paddedB;

    /// <summary>
    /// Stacks the adapters of one projection (null = the adapter does not target it). When
    /// <paramref name="aDestination"/> (ΣR, in) is given, A lives there (a row block of a fused weight buffer).
    /// </summary>
    public AdapterStack(ProjectionSite site, IReadOnlyList<(Tensor A, Tensor B, double Scale)?> perAdapter, ScalarType dtype, Device device,
        Tensor? aDestination = null)
    {
        Count = perAdapter.Count;
        Ranks = perAdapter.Select(p => p is { } x ? (int)x.A.shape[0] : 0).ToArray();
        Offsets = new int[Count];
        for (int i = 1; i < Count; i++) Offsets[i] = Offsets[i - 1] + Ranks[i - 1];
        TotalRank = Ranks.Sum();
        UniformRank = Ranks.All(r => r == Ranks[0]) && Ranks[0] > 0 ? Ranks[0] : null;
        Scales = perAdapter.Select(p => p?.Scale ?? 1.0).ToArray();
        Tensor a, b;
        using (var scope = NewDisposeScope())
        {
            var aParts = perAdapter.Where(p => p is not null).Select(p => p!.Value.A.to(ScalarType.Float32) * p.Value.Scale).ToList();
            var bParts = perAdapter.Where(p => p is not null).Select(p => p!.Value.B.to(ScalarType.Float32)).ToList();
            a = (aParts.Count > 0 ? cat(aParts, 0) : zeros(0, site.InFeatures)).to(dtype, device).contiguous();   // (ΣR, in)
            b = (bParts.Count > 0 ? cat(bParts, 1) : zeros(site.OutFeatures, 0)).to(dtype, device).contiguous();  // (out, ΣR)
            a.DetachFromDisposeScope();
            b.DetachFromDisposeScope();
        }
        // Parameters are made outside any dispose scope: they own their tensors for the model's lifetime.
        if (aDestination is not null)
        {
            using (no_grad()) aDestination.copy_(a);
            a.Dispose();
            a = aDestination;
        }
        A = ModelParameter.Create(a);
        B = ModelParameter.Create(b);
        var owner = Enumerable.Range(0, Count).SelectMany(i => Enumerable.Repeat((long)i, Ranks[i])).ToArray();
        using var ownerCpu = tensor(owner, ScalarType.Int64);
        Owner = ownerCpu.to(device).clone().DetachFromDisposeScope();   // owned by the stack
    }

    /// <summary>A of adapter i, (r_i, in) view (scale folded).</summary>
    public Tensor AOf(int i) => A.narrow(0, Offsets[i], Ranks[i]);
    /// <summary>B of adapter i, (out, r_i) view.</summary>
    public Tensor BOf(int i) => B.narrow(1, Offsets[i], Ranks[i]);

    /// <summary>(L, r_max, in) and (L, out, r_max), zero-padded: the gather formulation's layout.</summary>
    public (Tensor A, Tensor B) Padded()
    {
        if (A.requires_grad)
            throw new MeteoraException("the gather strategy copies the adapters and cannot train them; use dense, segment or loop");
        if (_paddedA is null && UniformRank is { } r)
        {
            // Equal ranks: the stacks already are the padded layout, as views (no copy).
            _paddedA = A.view(Count, r, A.shape[1]).DetachFromDisposeScope();                 // (L, r, in)
            _paddedB = B.view(B.shape[0], Count, r).permute(1, 0, 2).DetachFromDisposeScope(); // (L, out, r)
        }
        if (_paddedA is null)
        {
            using var scope = NewDisposeScope();
            int rMax = Math.Max(1, Ranks.Max());
            var a = zeros(Count, rMax, A.shape[1], A.dtype, A.device);
            var b = zeros(Count, B.shape[0], rMax, B.dtype, B.device);
            for (int i = 0; i < Count; i++)
            {
                if (Ranks[i] == 0) continue;
                a[i].narrow(0, 0, Ranks[i]).copy_(AOf(i));
                b[i].narrow(1, 0, Ranks[i]).copy_(BOf(i));
            }
            _paddedA = a.DetachFromDisposeScope();
            _paddedB = b.DetachFromDisposeScope();
        }
        return (_paddedA, _paddedB!);
    }

    /// <summary>Adapter i's (A (r, in) without its scale, B (out, r)) as float32 CPU copies.</summary>
    public (Tensor A, Tensor B) Unstack(int i)
    {
        using var scope = NewDisposeScope();
        var a = (AOf(i).detach().to(ScalarType.Float32) / Scales[i]).cpu();
        var b = BOf(i).detach().to(ScalarType.Float32).cpu().clone();
        return (a.DetachFromDisposeScope(), b.DetachFromDisposeScope());
    }

    /// <summary>Bytes held by the stacked tensors (and the padded copies, once built).</summary>
    public long Bytes => new[] { A, B, Owner, _paddedA, _paddedB }.Where(t => t is not null).Sum(t => t!.numel() * t.element_size());

    public void Dispose()
    {
        A.Dispose(); B.Dispose(); Owner.Dispose(); _paddedA?.Dispose(); _paddedB?.Dispose();
    }
}
