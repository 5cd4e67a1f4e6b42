using System.Diagnostics;
using Meteora.IO;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using TorchSharp;
using static TorchSharp.torch;

namespace Meteora.Training;

/// <summary>How a training run ended.</summary>
public enum TrainingOutcome { Completed, Interrupted }

/// <summary>
/// The shared optimisation loop: AdamW with decoupled weight decay, linear warm-up + cosine decay, gradient
/// accumulation and clipping, periodic evaluation and atomic checkpoints. Resuming is exact: the data order is
/// a function of the step (<see cref="DataOrder"/>), dropout is reseeded per step, and optimiser state and step
/// come from the checkpoint. Metrics go to <c>metrics.jsonl</c> in the output folder.
/// </summary>
internal sealed class TrainingLoop
{
    private readonly ITrainingObjective _objective;
    private readonly TrainingOptions _options;
    private readonly string _outDir;
    private readonly ITrainingProgress _progress;
    private readonly int _padId;
    private readonly Device _device;

    /// <summary>Metrics of the last evaluation (also written to metrics.jsonl).</summary>
    public IReadOnlyDictionary<string, double> LastEvaluation { get; private set; } = new Dictionary<string, double>();
    /// <summary>Metrics of the evaluation before the first step (a fresh run only).</summary>
    public IReadOnlyDictionary<string, double>? InitialEvaluation { get; private set; }

    public TrainingLoop(ITrainingObjective objective, TrainingOptions options, string outDir, int padId, Device device,
        ITrainingProgress? progress = null)
    {
        options.Validate();
        _objective = objective; _options = options; _outDir = outDir; _padId = padId; _device = device;
        _progress = progress ?? new SilentProgress();
    }

    /// <param name="train">training examples</param>
    /// <param name="eval">held-out examples (their mean loss parts are logged as eval_*)</param>
    /// <param name="cancel">stops the run at the next step with a checkpoint</param>
    /// <param name="replay">
    /// rehearsal examples (generic text): with <see cref="TrainingOptions.ReplayRows"/> &gt; 0, every micro-batch adds
    /// <c>ReplayWeight × loss</c> over that many of them (their own seeded order, so resume stays exact), logged as
    /// replay_loss
    /// </param>
    public TrainingOutcome Run(IReadOnlyList<EncodedExample> train, IReadOnlyList<EncodedExample>? eval,
        CancellationToken cancel = default, IReadOnlyList<EncodedExample>? replay = null)
    {
        if (train.Count == 0) throw new MeteoraException("training data is empty");
        var o = _options;
        if (o.ReplayRows > 0 && replay is not { Count: > 0 }) throw new MeteoraException("--replay: this trainer has no rehearsal text to replay");
        Directory.CreateDirectory(_outDir);
        // Length buckets need every example's length: not for generated sources (their sequences are all full length).
        var buckets = o.LengthBuckets && train is not IExampleSource ? train.Select(e => DataOrder.LengthBucket(e.Ids.Length)).ToList() : null;
        var order = new DataOrder(GroupsOf(train), o.Seed, o.Balance, buckets, o.BatchSize);
        var replayOrder = o.ReplayRows > 0 ? new DataOrder(GroupsOf(replay!), o.Seed + 1) : null;
        int total = o.TotalSteps(order.EpochLength);
        var schedule = new CosineSchedule(o.LearningRate, o.Warmup(total), total, o.MinLrRatio);
        foreach (var p in _objective.Parameters) p.requires_grad = true;
        using var optimizer = optim.AdamW(_objective.Parameters, o.LearningRate, o.Beta1, o.Beta2, o.AdamEps, o.WeightDecay);
        string fingerprint = Fingerprint(train, total, replayOrder is null ? null : replay);

        int start = 0;
        if (o.Resume)
        {
            var state = TrainingCheckpoint.Load(_outDir, _objective, optimizer, fingerprint);
            start = state.Step;
            _progress.Message($"resuming from step {start} of {total}");
        }
        using var metrics = OpenMetrics(start);
        _progress.Start(total, start);

        if (start == 0 && eval is { Count: > 0 })
        {
            InitialEvaluation = Evaluate(eval);
            Log(metrics, 0, "eval", InitialEvaluation);
        }

        var clock = Stopwatch.StartNew();
        long tokensSeen = 0;
        // Generated examples (pretraining documents) are built on worker threads, one micro-batch ahead, so making
        // text overlaps the device's work on the current batch; examples held in memory are just looked up.
        static List<EncodedExample> Fetch(IReadOnlyList<EncodedExample> from, int[] idx) => from is IExampleSource
            ? idx.AsParallel().AsOrdered().Select(i => from[i]).ToList()
            : idx.Select(i => from[i]).ToList();
        List<EncodedExample> Rows(long k) => Fetch(train, order.MicroBatch(k, o.BatchSize));
        Task<List<EncodedExample>>? ahead = null;
        try
        {
        for (int step = start; step < total; step++)
        {
            double lr = schedule.At(step);
            foreach (var g in optimizer.ParamGroups) g.LearningRate = lr;
            Reseed(o.Seed + step);
            optimizer.zero_grad();
            var sums = new Dictionary<string, double>();
            for (int micro = 0; micro < o.GradAccum; micro++)
            {
                using var scope = NewDisposeScope();
                long k = (long)step * o.GradAccum + micro;
                var rows = ahead is null ? Rows(k) : ahead.GetAwaiter().GetResult();
                bool more = micro + 1 < o.GradAccum || (step + 1 < total && o.StopAfter != step + 1);
                ahead = train is IExampleSource && more ? Task.Run(() => Rows(k + 1)) : null;
                using var batch = TrainingBatch.Collate(rows, _padId, _device);
                var (loss, parts) = _objective.Loss(batch, training: true);
                if (replayOrder is not null)
                {
                    // Rehearsal: the same objective on generic text, so the trained weights keep the base's skills.
                    using var rb = TrainingBatch.Collate(Fetch(replay!, replayOrder.MicroBatch(k, o.ReplayRows)), _padId, _device);
                    var (replayLoss, _) = _objective.Loss(rb, training: true);
                    parts = new Dictionary<string, double>(parts) { ["replay_loss"] = replayLoss.item<float>() };
                    loss = loss + o.ReplayWeight * replayLoss;
                    tokensSeen += rb.Tokens;
                }
                (loss / o.GradAccum).backward();
                _objective.AfterBackward();
                foreach (var (name, v) in parts) sums[name] = sums.GetValueOrDefault(name) + v / o.GradAccum;
                tokensSeen += batch.Tokens;
            }
            if (o.ClipNorm > 0) sums["grad_norm"] = nn.utils.clip_grad_norm_(_objective.Parameters, o.ClipNorm);
            optimizer.step();
            _objective.AfterOptimizerStep();
            sums["lr"] = lr;

            double elapsed = clock.Elapsed.TotalSeconds;
            double tps = tokensSeen / Math.Max(elapsed, 1e-9);
            var eta = TimeSpan.FromSeconds(elapsed / (step + 1 - start) * (total - step - 1));
            Log(metrics, step + 1, "train", sums.Append(new("tokens_per_s", tps)));
            _progress.Step(step + 1, total, sums, tps, eta);

            bool last = step + 1 == total;
            if (eval is { Count: > 0 } && (last || (o.EvalEvery > 0 && (step + 1) % o.EvalEvery == 0)))
            {
                LastEvaluation = Evaluate(eval);
                Log(metrics, step + 1, "eval", LastEvaluation);
                _progress.Evaluation(step + 1, LastEvaluation);
            }
            bool stop = !last && (cancel.IsCancellationRequested || o.StopAfter == step + 1);
            if (stop || (!last && o.CheckpointEvery > 0 && (step + 1) % o.CheckpointEvery == 0))
            {
                TrainingCheckpoint.Save(_outDir, _objective, optimizer, new(step + 1, total, o.Seed, fingerprint));
                _progress.Message($"checkpoint at step {step + 1} → {TrainingCheckpoint.PathIn(_outDir)}");
            }
            if (stop)
            {
                _progress.Stop();
                return TrainingOutcome.Interrupted;
            }
        }
        }
        finally
        {
            // A batch still being built (Ctrl-C, an error) must not outlive the run: it reads the tokenizer the caller disposes.
            try { ahead?.Wait(); } catch (AggregateException) { }
        }
        _objective.SaveArtifact(_outDir);
        TrainingCheckpoint.Delete(_outDir);   // the run is complete; its optimiser state is no longer needed
        _progress.Stop();
        return TrainingOutcome.Completed;
    }

    /// <summary>Mean of each loss part over the evaluation examples (no gradients, eval mode).</summary>
    public IReadOnlyDictionary<string, double> Evaluate(IReadOnlyList<EncodedExample> eval)
    {
        using var noGrad = no_grad();
        var sums = new Dictionary<string, double>();
        double weight = 0;
        var rows = eval.Take(_options.EvalLimit).ToList();
        for (int i = 0; i < rows.Count; i += _options.BatchSize)
        {
            using var scope = NewDisposeScope();
            using var batch = TrainingBatch.Collate(rows.Skip(i).Take(_options.BatchSize).ToList(), _padId, _device);
            var (_, parts) = _objective.Loss(batch, training: false);
            foreach (var (name, v) in parts) sums[name] = sums.GetValueOrDefault(name) + v * batch.LossTokens;
            weight += batch.LossTokens;
        }
        return sums.ToDictionary(kv => "eval_" + kv.Key, kv => kv.Value / Math.Max(weight, 1));
    }

    private void Reseed(long seed)
    {
        manual_seed(seed);
        if (_device.type == DeviceType.CUDA) cuda.manual_seed_all(seed);
    }

    private static IReadOnlyList<int> GroupsOf(IReadOnlyList<EncodedExample> examples) =>
        examples is IExampleSource source ? source.Tasks : examples.Select(e => e.Task).ToList();

    /// <summary>Identifies the data and settings a checkpoint belongs to (resuming with others is refused).</summary>
    private string Fingerprint(IReadOnlyList<EncodedExample> train, int total, IReadOnlyList<EncodedExample>? replay)
    {
        using var sha = SHA256.Create();
        var sb = new StringBuilder();
        var o = _options with { Resume = false, StopAfter = null, EvalEvery = 0, CheckpointEvery = 0 };
        sb.Append(JsonSerializer.Serialize(o)).Append(total).Append(_objective.Description);
        foreach (var data in replay is null ? [train] : new[] { train, replay })
        {
            if (data is IExampleSource source)
                sb.Append(source.Fingerprint);   // generated on demand: its generator's settings identify it
            else foreach (var e in data) sb.Append(string.Join(',', e.Ids)).Append('|').Append(e.Task).Append(';');
            sb.Append("||");
        }
        return Convert.ToHexString(sha.ComputeHash(Encoding.UTF8.GetBytes(sb.ToString())))[..16];
    }

    private StreamWriter OpenMetrics(int start)
    {
        string path = Path.Combine(_outDir, "metrics.jsonl");
        // On resume keep only the lines up to the checkpoint's step, so the log reads as one run. A line cut short
        // by a kill (or otherwise unreadable) is dropped and reported, not fatal.
        var keep = new List<string>();
        int dropped = 0;
        if (start > 0 && File.Exists(path))
            foreach (var line in File.ReadAllLines(path))
            {
                int? step = null;
                try
                {
                    using var doc = JsonDocument.Parse(line);
                    if (doc.RootElement.ValueKind == JsonValueKind.Object && doc.RootElement.TryGetProperty("step", out var s)
                        && s.TryGetInt32(out int v)) step = v;
                }
                catch (JsonException) { }
                if (step is null) { dropped++; continue; }
                if (step <= start) keep.Add(line);
            }
        if (dropped > 0) _progress.Message($"{path}: skipped {dropped} unreadable line(s) (a run killed while writing?)");
        AtomicFile.WriteAllText(path, keep.Count > 0 ? string.Join('\n', keep) + "\n" : "");
        return new StreamWriter(path, append: true) { AutoFlush = true };
    }

    private static void Log(StreamWriter w, int step, string kind, IEnumerable<KeyValuePair<string, double>> values)
    {
        var line = new Dictionary<string, object> { ["step"] = step, ["kind"] = kind };
        foreach (var (k, v) in values) line[k] = double.IsFinite(v) ? Math.Round(v, 6) : v.ToString();
        w.WriteLine(JsonSerializer.Serialize(line));
    }
}
