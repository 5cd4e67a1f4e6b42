using Meteora.Runtime;
using Meteora.Moe;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Meteora.Training;

/// <summary>
/// Gate training: the MeteoRA loss (LM + λ · gate CE) with the gates as the trainable parameters, and optionally
/// the stacked adapters too. The artifact is a MeteoRA checkpoint folder (self-contained when adapters trained).
/// </summary>
public sealed class MeteoraObjective : ITrainingObjective
{
    private readonly MeteoraModel _m;
    private readonly double _lambda;
    private readonly bool _trainAdapters;
    private readonly string? _baseModel;
    private readonly IReadOnlyList<string?> _adapterPaths;

    public MeteoraObjective(MeteoraModel m, double gateLossWeight, bool trainAdapters, string? baseModel, IReadOnlyList<string?> adapterPaths)
    {
        _m = m; _lambda = gateLossWeight; _trainAdapters = trainAdapters; _baseModel = baseModel; _adapterPaths = adapterPaths;
        var ps = m.Projections.Select(p => (Parameter)p.moe_gate).ToList();
        if (trainAdapters)
        {
            if (m.Projections.Any(p => p.Adapters.A.dtype != ScalarType.Float32))
                throw new MeteoraException("--train-adapters needs the adapter stacks in float32");
            ps.AddRange(m.Projections.Where(p => p.Adapters.TotalRank > 0).SelectMany(p => new[] { p.Adapters.A, p.Adapters.B }));
        }
        Parameters = ps;
    }

    public IReadOnlyList<Parameter> Parameters { get; }

    private string _gateInit = "loaded";

    /// <summary>
    /// λ, the training form's top-k and temperature, the gate initialisation, whether adapters train, the adapters
    /// (names, ranks, alphas in gate order) and the model's dtype: resuming with any of them changed is refused.
    /// </summary>
    public string Description =>
        $"meteora λ={_lambda:R} top-k={_m.Routing.TopK} T={_m.Routing.Temperature:R} init={_gateInit} train-adapters={_trainAdapters} " +
        $"dtype={_m.Model.DType} adapters=[{string.Join(", ", _m.Adapters.Select(a => $"{a.Name} r={a.Config.R} α={a.Config.LoraAlpha:R}"))}]" +
        (_slowRows > 0 ? $" slow-rows={_slowRows}×{_slowScale:R}" : "");

    /// <summary>
    /// Gate initialisation. "normal": N(0, 1), as the original code leaves nn.Linear-sized gates; "small":
    /// N(0, (0.1/√in)²), logits near zero so routing starts close to uniform (see docs/TRAINING.md).
    /// </summary>
    public void InitializeGates(string scheme, int seed)
    {
        _gateInit = scheme;
        using var noGrad = no_grad();
        using var gen = new Generator((ulong)seed);
        foreach (var p in _m.Projections)
        {
            double std = scheme switch
            {
                "normal" => 1.0,
                "small" => 0.1 / Math.Sqrt(p.Site.InFeatures),
                _ => throw new MeteoraException($"--gate-init: unknown scheme '{scheme}' (use small or normal)"),
            };
            using var g = empty(p.moe_gate.shape, ScalarType.Float32).normal_(0, std, gen);
            p.moe_gate.copy_(g);
        }
        _m.SyncGates();
    }

    public (Tensor Loss, IReadOnlyDictionary<string, double> Parts) Loss(TrainingBatch batch, bool training, LossCounts? normalizers = null)
    {
        _m.Model.train(training);
        var v = MeteoraLoss.Compute(_m, batch, _lambda, normalizers);
        return (v.Total, new Dictionary<string, double>
        {
            ["loss"] = v.Total.item<float>(), ["lm_loss"] = v.Lm.item<float>(), ["gate_loss"] = v.Gate.item<float>(), ["gate_acc"] = v.GateAccuracy(),
        });
    }

    /// <inheritdoc/>
    public bool HasLossOnDevice => true;

    /// <inheritdoc/>
    public (long Parameters, int Projections) GraphSizes => (_m.Model.parameters().Sum(p => p.numel()), _m.Projections.Count);

    /// <inheritdoc/>
    public (Tensor Loss, IReadOnlyList<(string Name, Tensor Value)> Parts)? LossOnDevice(TrainingBatch batch)
    {
        _m.Model.train(true);
        var v = MeteoraLoss.Compute(_m, batch, _lambda);
        using var one = 1.0.ToScalar();   // held for the op (see RmsNorm)
        return (v.Total, [("loss", v.Total), ("lm_loss", v.Lm), ("gate_loss", v.Gate), ("gate_acc", v.Correct.div(v.Decisions.clamp_min(one)).to(ScalarType.Float32))]);
    }

    public IEnumerable<KeyValuePair<string, Tensor>> TrainableState()
    {
        foreach (var p in _m.Projections)
        {
            yield return new(MeteoraCheckpoint.GateKey(p.Site.Key), p.moe_gate);
            if (_trainAdapters && p.Adapters.TotalRank > 0)
            {
                yield return new($"{p.Site.Key}.stacked_A", p.Adapters.A);
                yield return new($"{p.Site.Key}.stacked_B", p.Adapters.B);
            }
        }
    }

    public void LoadTrainableState(IReadOnlyDictionary<string, Tensor> state)
    {
        using var noGrad = no_grad();
        foreach (var (name, target) in TrainableState())
        {
            if (!state.TryGetValue(name, out var t)) throw new MeteoraException($"checkpoint: missing tensor '{name}'");
            target.copy_(t);
        }
        Snapshot();   // a resumed run scales its next steps from the restored rows
        _m.SyncGates();   // the low-precision gate copies follow the float32 gates
    }

    public void SaveArtifact(string folder) => _m.Save(folder, _baseModel, selfContained: _trainAdapters || _adapterPaths.Any(p => p is null), _adapterPaths);

    private int _slowRows;
    private double _slowScale = 1.0;
    private List<Tensor>? _slowSnapshot;   // per projection: rows [0, _slowRows) after the last step

    /// <summary>
    /// Trains gate rows [0, <paramref name="rows"/>) at <paramref name="scale"/> × the learning rate (0 freezes them):
    /// after every optimiser step their change is scaled by it. AdamW's update is proportional to the learning rate
    /// (its moments depend on the gradients only), so this is exactly AdamW with that smaller rate for those rows,
    /// weight decay included. <c>add-adapter</c> uses it for the rows the old gates learnt.
    /// </summary>
    public void SlowRows(int rows, double scale)
    {
        if (rows < 0 || rows > _m.AdapterNames.Count) throw new MeteoraException($"slow gate rows: {rows} outside 0…{_m.AdapterNames.Count}");
        if (!(scale >= 0 && scale <= 1)) throw new MeteoraException($"--old-rows-lr: must be between 0 and the learning rate (scale {scale})");
        _slowRows = rows; _slowScale = scale;
        Snapshot();
    }

    private void Snapshot()
    {
        if (_slowRows == 0) return;
        _slowSnapshot?.ForEach(t => t.Dispose());
        using var noGrad = no_grad();
        _slowSnapshot = _m.Projections.Select(p => p.moe_gate.narrow(0, 0, _slowRows).clone().DetachFromDisposeScope()).ToList();
    }

    public void AfterOptimizerStep()
    {
        SlowDownOldRows();
        _m.SyncGates();   // the low-precision gate copies follow the float32 gates after every step
    }

    private void SlowDownOldRows()
    {
        if (_slowSnapshot is null || _slowScale == 1.0) return;
        using var noGrad = no_grad();
        using var scale = _slowScale.ToScalar();   // held for the op (see RmsNorm)
        for (int i = 0; i < _m.Projections.Count; i++)
        {
            var rows = _m.Projections[i].moe_gate.narrow(0, 0, _slowRows);                 // (old N, in), a view
            var before = _slowSnapshot[i];
            rows.sub_(before).mul_(scale).add_(before, HeldScalars.One);                    // before + scale · (after − before)
            before.copy_(rows);
        }
    }
}
