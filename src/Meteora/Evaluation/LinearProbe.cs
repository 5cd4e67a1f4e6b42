using TorchSharp;
using static TorchSharp.torch;

namespace Meteora.Evaluation;

/// <summary>
/// A multinomial logistic regression from a projection's input to a class (the task whose adapter a gate should pick),
/// fitted full-batch: the best a linear gate could do on those inputs, for <see cref="CompositeRoutingProbe.FitLinearGates"/>.
/// Inputs are standardised with the training rows' mean and spread (a gate could fold that into its weights and bias).
/// </summary>
public sealed class LinearProbe : IDisposable
{
    private readonly Tensor _mean, _scale, _w, _b;

    private LinearProbe(Tensor mean, Tensor scale, Tensor w, Tensor b) => (_mean, _scale, _w, _b) = (mean, scale, w, b);

    /// <summary>
    /// Fits x (rows, in) float32 to y (rows,) int64 in [0, <paramref name="classes"/>): Adam, <paramref name="steps"/>
    /// full-batch steps, a small L2 penalty. Seeded (weights start at zero), so a refit gives the same probe.
    /// </summary>
    public static LinearProbe Fit(Tensor x, Tensor y, int classes, int steps = 300, double lr = 0.05, double l2 = 1e-4)
    {
        if (x.dim() != 2 || y.dim() != 1 || x.shape[0] != y.shape[0] || x.shape[0] < 2)
            throw new ArgumentException($"linear probe: inputs {string.Join('×', x.shape)} and labels {string.Join('×', y.shape)} do not pair up (at least two rows)");
        using var scope = NewDisposeScope();
        var mean = x.mean([0]);                                                       // (in,)
        var scale = x.std(0, unbiased: false) + 1e-5;                                 // (in,)
        var xs = (x - mean) / scale;                                                  // (rows, in)
        var w = new TorchSharp.Modules.Parameter(zeros(x.shape[1], classes));        // (in, classes)
        var b = new TorchSharp.Modules.Parameter(zeros(classes));
        using (var optimizer = optim.Adam([w, b], lr))
        {
            for (int step = 0; step < steps; step++)
            {
                using var stepScope = NewDisposeScope();
                optimizer.zero_grad();
                var loss = nn.functional.cross_entropy(xs.mm(w) + b, y) + w.pow(2).sum() * l2;
                loss.backward();
                optimizer.step();
            }
        }
        return new LinearProbe(mean.DetachFromDisposeScope(), scale.DetachFromDisposeScope(),
            w.detach().DetachFromDisposeScope(), b.detach().DetachFromDisposeScope());
    }

    /// <summary>The most likely class of each row of x (rows, in): (rows,) int64.</summary>
    public Tensor Predict(Tensor x)
    {
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        return ((x - _mean) / _scale).mm(_w).add(_b).argmax(1).MoveToOuterDisposeScope();
    }

    /// <summary>How many rows of x (rows, in) it classifies as y (rows,).</summary>
    public long Right(Tensor x, Tensor y)
    {
        using var scope = NewDisposeScope();
        return Predict(x).eq(y).sum().item<long>();
    }

    public void Dispose()
    {
        _mean.Dispose(); _scale.Dispose(); _w.Dispose(); _b.Dispose();
    }
}
