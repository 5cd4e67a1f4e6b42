using System.Diagnostics;
using Meteora.Distributed;
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
/// <para>
/// A step's global batch is <c>--batch-size × --grad-accum</c> rows at fixed positions of the data order. Given a
/// communicator of W ranks (data parallelism, DESIGN.md "Distributed"), rank r computes the r-th share of them in
/// micro-batches of at most <c>--batch-size</c> rows; every loss is normalised by the whole step's counts
/// (<see cref="LossCounts"/>, all-reduced), and the gradients are summed over the ranks in one flat buffer, so a
/// step equals the single-process step on the same global batch and a run resumes on any world size that divides
/// it. Rank 0 alone writes metrics, checkpoints and the artifact; the others wait for it at a barrier.
/// </para>
/// </summary>
internal sealed class TrainingLoop
{
    private readonly ITrainingObjective _objective;
    private readonly TrainingOptions _options;
    private readonly string _outDir;
    private readonly ITrainingProgress _progress;
    private readonly int _padId;
    private readonly Device _device;
    private readonly ICommunicator? _comm;   // null in a single process (or a world of one): no collectives at all
    private readonly int _rank, _world;

    /// <summary>Metrics of the last evaluation (also written to metrics.jsonl).</summary>
    public IReadOnlyDictionary<string, double> LastEvaluation { get; private set; } = new Dictionary<string, double>();
    /// <summary>Metrics of the evaluation before the first step (a fresh run only).</summary>
    public IReadOnlyDictionary<string, double>? InitialEvaluation { get; private set; }
    /// <summary>
    /// Metrics of the weights the run wrote: the last evaluation's, or with <see cref="TrainingOptions.KeepBest"/> the
    /// kept step's (only <c>eval_loss</c> when that step was evaluated before a <c>--resume</c>). An interrupted run
    /// wrote its last step's weights into the checkpoint: the last evaluation.
    /// </summary>
    public IReadOnlyDictionary<string, double> WrittenEvaluation => _kept?.Evaluation ?? LastEvaluation;
    /// <summary>With <see cref="TrainingOptions.KeepBest"/>, the step whose weights a completed run wrote instead of its last (null: the last).</summary>
    public int? KeptStep => _kept?.Step;
    private (int Step, IReadOnlyDictionary<string, double> Evaluation)? _kept;

    /// <param name="communicator">the job's ranks for data-parallel training (null: this process alone)</param>
    public TrainingLoop(ITrainingObjective objective, TrainingOptions options, string outDir, int padId, Device device,
        ITrainingProgress? progress = null, ICommunicator? communicator = null)
    {
        options.Validate();
        _objective = objective; _options = options; _outDir = outDir; _padId = padId; _device = device;
        _rank = communicator?.Rank ?? 0;
        _world = communicator?.WorldSize ?? 1;
        _comm = _world > 1 ? communicator : null;
        // Logging and progress from rank 0 only.
        _progress = SilentProgress.OnRankZero(progress, _rank);
        if (GlobalBatch % _world != 0)
            throw new MeteoraException($"--batch-size × --grad-accum = {GlobalBatch} rows (the global batch) must be a multiple of the world size {_world}");
        if (options.ReplayRows > 0 && GlobalReplay % _world != 0)
            throw new MeteoraException($"--replay × --grad-accum = {GlobalReplay} rehearsal rows per step must be a multiple of the world size {_world}");
    }

    /// <summary>Rows per optimiser step, over all ranks.</summary>
    private int GlobalBatch => _options.BatchSize * _options.GradAccum;

    /// <summary>
    /// <see cref="TrainingOptions.CudaGraphs"/> = null's choice: whether replaying padded steps beats running them one op
    /// at a time, from two estimates calibrated on one H200 (docs/BENCHMARKS.md, "Gate training as one CUDA graph per
    /// step"). A step-by-step step costs the longer of its launches — about 1.5 ms of host time per routed projection
    /// (an 8B model's 224: 336 ms measured 350) — and its GPU work; a graphed step costs the GPU work of the padded batch.
    /// GPU work is taken as 6 FLOP per parameter and token at 400 TFLOP/s (an 8B step of 2 048 tokens: 246 ms estimated,
    /// 207 measured). Without the objective's sizes (<see cref="ITrainingObjective.GraphSizes"/>) padding may add at most
    /// half the tokens. Returns whether to graph and, when not, why.
    /// </summary>
    internal static (bool Graph, string? Why) ChooseGraph(long parameters, int projections, int rows, int length, double meanLength)
    {
        double padding = length / meanLength - 1;
        string padded = $"padding every row to the longest example's {length} tokens adds {padding:P0} tokens";
        if (parameters <= 0 || projections <= 0)
            return padding <= 0.5 ? (true, null) : (false, padded + " (--cuda-graph on to graph anyway)");
        double Gpu(double tokens) => 6.0 * parameters * tokens * rows / 4e14;
        double eager = Math.Max(1.5e-3 * projections, Gpu(meanLength)), graphed = Gpu(length);
        return graphed <= eager * 1.000001 ? (true, null)
            : (false, $"{padded}: est. {graphed * 1e3:F0} ms of GPU work a step against {eager * 1e3:F0} ms step by step (--cuda-graph on to graph anyway)");
    }

    /// <summary>
    /// The padded length of a CUDA-graphed step's rows (<see cref="GraphedTrainingStep"/>: --batch-size rows of the longest
    /// example) when <see cref="TrainingOptions.CudaGraphs"/> asks for it or leaves it to us and it applies, else null.
    /// Says what it chose; refuses <c>--cuda-graph on</c> where it cannot apply, before anything is written.
    /// </summary>
    private int? GraphLength(IReadOnlyList<EncodedExample> train)
    {
        var o = _options;
        if (o.CudaGraphs == false) return null;
        string? why = GraphedTrainingStep.Unsupported(_objective, o, _device, _comm is not null, o.ReplayRows > 0)
            ?? (train is IExampleSource ? "examples generated while training (their lengths are not known ahead)" : null);
        int length = 0;
        if (why is null)
        {
            length = train.Max(e => e.Ids.Length);
            var (parameters, projections) = _objective.GraphSizes;
            if (o.CudaGraphs is null) why = ChooseGraph(parameters, projections, o.BatchSize, length, train.Average(e => (double)e.Ids.Length)).Why;
        }
        if (why is not null)
        {
            if (o.CudaGraphs == true) throw new MeteoraException($"--cuda-graph on: {why}");
            if (_device.type == DeviceType.CUDA && _objective.HasLossOnDevice) _progress.Message($"CUDA graph: off, {why}");
            return null;
        }
        // Every step has --batch-size rows: the data order wraps around a smaller set.
        _progress.Message($"CUDA graph: each step replayed as one graph, batches padded to {o.BatchSize} × {length} tokens");
        return length;
    }

    /// <summary>Rehearsal rows per optimiser step, over all ranks.</summary>
    private int GlobalReplay => _options.ReplayRows * _options.GradAccum;

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
        try { return RunSteps(train, eval, cancel, replay); }
        finally
        {
            // Out of training mode however the run ends (completed, interrupted, an error): a MeteoRA projection switches
            // to its training form while its gate requires grad, so inference after training would otherwise stay there.
            foreach (var p in _objective.Parameters) p.requires_grad = false;
        }
    }

    private TrainingOutcome RunSteps(IReadOnlyList<EncodedExample> train, IReadOnlyList<EncodedExample>? eval,
        CancellationToken cancel, IReadOnlyList<EncodedExample>? replay)
    {
        if (train.Count == 0) throw new MeteoraException("training data is empty");
        var o = _options;
        if (o.ReplayRows > 0 && replay is not { Count: > 0 }) throw new MeteoraException("--replay: this trainer has no rehearsal text to replay");
        if (o.KeepBest && eval is not { Count: > 0 }) throw new MeteoraException("--keep-best: there are no held-out examples to choose by (--eval-fraction)");
        if (o.KeepBest && o.EvalEvery <= 0) throw new MeteoraException("--keep-best: give --eval-every N, the evaluations it chooses among");
        int? graphLength = GraphLength(train);
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
        CheckSameRun(fingerprint);

        int start = 0;
        using var best = new BestWeights();
        if (o.Resume)
        {
            var (state, kept) = TrainingCheckpoint.Load(_outDir, _objective, optimizer, fingerprint);
            start = state.Step;
            if (kept is not null) best.Restore(state.BestStep!.Value, state.BestLoss ?? double.PositiveInfinity, kept);
            _progress.Message($"resuming from step {start} of {total}");
        }
        BroadcastTrainableState();
        using var metrics = _rank == 0 ? OpenMetrics(start) : null;
        _progress.Start(total, start);

        if (start == 0 && eval is { Count: > 0 })
        {
            InitialEvaluation = Evaluate(eval);
            if (metrics is not null) Log(metrics, 0, "eval", InitialEvaluation);
            if (o.KeepBest) best.Consider(0, InitialEvaluation, _objective);
        }

        var clock = Stopwatch.StartNew();
        long tokensSeen = 0, rankTokensSeen = 0;
        // Generated examples (pretraining documents) are built on worker threads, one step ahead, so making text
        // overlaps the device's work on the current step; examples held in memory are just looked up.
        static List<EncodedExample> Fetch(IReadOnlyList<EncodedExample> from, int[] idx) => from is IExampleSource
            ? idx.AsParallel().AsOrdered().Select(i => from[i]).ToList()
            : idx.Select(i => from[i]).ToList();
        // This rank's rows of global step s: the step's global batch is positions [s·G, (s+1)·G) of the data order,
        // whatever the world size; rank r takes the r-th share of it (DataParallel.Slice).
        List<EncodedExample> RankRows(int s) => Fetch(train, DataParallel.RowsOf(order.Positions((long)s * GlobalBatch, GlobalBatch), _rank, _world));
        List<EncodedExample> RankReplay(int s) => Fetch(replay!, DataParallel.RowsOf(replayOrder!.Positions((long)s * GlobalReplay, GlobalReplay), _rank, _world));
        Task<List<EncodedExample>>? ahead = null;
        GraphedTrainingStep? graphed = null;
        int stepsRun = 0;
        try
        {
        if (graphLength is { } length)
            graphed = new GraphedTrainingStep(_objective, optimizer, o, _device, _padId, o.BatchSize, length, train.Any(e => e.LossWeights is not null));
        for (int step = start; step < total; step++)
        {
            double lr = schedule.At(step);
            foreach (var g in optimizer.ParamGroups) g.LearningRate = lr;
            var rows = ahead is null ? RankRows(step) : ahead.GetAwaiter().GetResult();
            bool more = step + 1 < total && o.StopAfter != step + 1;
            int next = step + 1;   // captured by value: the loop variable moves on before the task may start
            ahead = train is IExampleSource && more ? Task.Run(() => RankRows(next)) : null;
            var replayRows = replayOrder is null ? [] : RankReplay(step);
            // The micro-batches this rank computes (at most --batch-size rows each), each with its share of the replay rows.
            var micro = rows.Chunk(o.BatchSize).ToList();
            var microReplay = Enumerable.Range(0, micro.Count).Select(i => Part(replayRows, micro.Count, i)).ToList();

            // The step's denominators over all its rows (every micro-batch, every rank), known before the forward
            // passes: each micro-batch's loss is its sums over them, so the summed gradient is the global batch's.
            var (taskCounts, replayCounts, stepTokens, rankTokens, anyCancel) = StepCounts(rows, replayRows, cancel.IsCancellationRequested);
            // One micro-batch on one process: the step's counts are the batch's own, and the batch's mean (computed
            // as before data parallelism existed, bit for bit) is the same loss.
            bool own = _comm is null && micro.Count == 1;
            LossCounts? taskNorm = own ? null : taskCounts, replayNorm = own ? null : replayCounts;
            // A CUDA-graphed step when the batch fits the graph's shape (the graph zeroes, clips and updates itself).
            bool fits = graphed is not null && micro.Count == 1 && graphed.Fits(micro[0]);
            var sums = fits ? graphed!.Step(micro[0], lr) : null;
            if (fits && sums is null)   // the capture failed: said once, since nothing fits a failed graph again
                _progress.Message($"CUDA graph: the step could not be captured ({graphed!.Failure}); training goes on step by step");
            bool eager = sums is null;
            sums ??= new Dictionary<string, double>();
            if (eager) optimizer.zero_grad();
            int shareStart = DataParallel.Slice(GlobalBatch, _rank, _world).Start;
            for (int i = 0; eager && i < micro.Count; i++)
            {
                // Dropout is seeded by the step and the micro-batch's first row in the global batch: resume is exact, and
                // ranks whose micro-batches are the single process's draw its masks (seed + step for the first).
                Reseed(o.Seed + step + (shareStart + (long)i * o.BatchSize) * 1_000_003L);
                using var scope = NewDisposeScope();
                using var batch = TrainingBatch.Collate(micro[i], _padId, _device);
                var (loss, parts) = _objective.Loss(batch, training: true, taskNorm);
                if (replayOrder is not null)
                {
                    double replayPart = 0;
                    if (microReplay[i].Count > 0)
                    {
                        // Rehearsal: the same objective on generic text, so the trained weights keep the base's skills.
                        using var rb = TrainingBatch.Collate(microReplay[i], _padId, _device);
                        var (replayLoss, _) = _objective.Loss(rb, training: true, replayNorm);
                        replayPart = replayLoss.item<float>();
                        loss = loss + o.ReplayWeight * replayLoss;
                    }
                    parts = new Dictionary<string, double>(parts) { ["replay_loss"] = replayPart };
                }
                _progress.Phase("forward");
                loss.backward();
                _objective.AfterBackward();
                _progress.Phase("backward");
                foreach (var (name, v) in parts) sums[name] = sums.GetValueOrDefault(name) + v;
            }
            if (_comm is not null)
            {
                AllReduceGradients();
                sums = AllReduceParts(sums);
            }
            tokensSeen += stepTokens;
            rankTokensSeen += rankTokens;
            if (eager)
            {
                if (o.ClipNorm > 0) sums["grad_norm"] = nn.utils.clip_grad_norm_(_objective.Parameters, o.ClipNorm);
                _progress.Phase("gradients");
                optimizer.step();
                _objective.AfterOptimizerStep();
                _progress.Phase("optimizer");
            }
            else _progress.Phase("CUDA graph");
            stepsRun++;
            sums["lr"] = lr;

            double elapsed = clock.Elapsed.TotalSeconds;
            double tps = tokensSeen / Math.Max(elapsed, 1e-9);
            var eta = TimeSpan.FromSeconds(elapsed / (step + 1 - start) * (total - step - 1));
            if (_world > 1) sums["rank_tokens_per_s"] = rankTokensSeen / Math.Max(elapsed, 1e-9);   // this rank's share (rank 0's)
            if (metrics is not null) Log(metrics, step + 1, "train", sums.Append(new("tokens_per_s", tps)));
            _progress.Step(step + 1, total, sums, tps, eta);

            bool last = step + 1 == total;
            if (eval is { Count: > 0 } && (last || (o.EvalEvery > 0 && (step + 1) % o.EvalEvery == 0)))
            {
                // Every rank evaluates the same examples (the same numbers); rank 0 logs them.
                LastEvaluation = Evaluate(eval);
                if (metrics is not null) Log(metrics, step + 1, "eval", LastEvaluation);
                _progress.Evaluation(step + 1, LastEvaluation);
                if (o.KeepBest) best.Consider(step + 1, LastEvaluation, _objective);
            }
            // A single process sees Ctrl-C at once; ranks stop together at the step where any of them saw it.
            bool cancelled = _comm is null ? cancel.IsCancellationRequested : anyCancel;
            bool stop = !last && (cancelled || o.StopAfter == step + 1);
            if (stop || (!last && o.CheckpointEvery > 0 && (step + 1) % o.CheckpointEvery == 0))
            {
                if (_rank == 0)
                    TrainingCheckpoint.Save(_outDir, _objective, optimizer,
                        new(step + 1, total, o.Seed, fingerprint, best.KeptStep, best.KeptLoss), best.Tensors);
                _comm?.Barrier();   // nobody goes on (or exits) before the checkpoint is complete
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
            if (graphed is not null)
            {
                // Said at the end too: steps whose batch did not fit the graph's shape ran step by step, silently.
                _progress.Message($"CUDA graph: {graphed.Replays} of {stepsRun} steps replayed from the graph");
                graphed.Dispose();
            }
            // A batch still being built (Ctrl-C, an error) must not outlive the run: it reads the tokenizer the caller disposes.
            try { ahead?.Wait(); } catch (AggregateException) { }
        }
        if (best.Tensors is not null && best.Step != total)
        {
            // Early stopping's choice: the artifact holds the weights of the lowest held-out loss.
            _objective.LoadTrainableState(best.Tensors);
            _kept = (best.Step, best.Evaluation);
            _progress.Message($"--keep-best: writing the weights of step {best.Step} (eval_loss {best.Loss:0.0000}; step {total}: {LastEvaluation.GetValueOrDefault("eval_loss", double.NaN):0.0000})");
        }
        if (best.Tensors is not null && metrics is not null) Log(metrics, best.Step, "best", [new("eval_loss", best.Loss)]);
        best.Dispose();
        if (_rank == 0)
        {
            _objective.SaveArtifact(_outDir);
            TrainingCheckpoint.Delete(_outDir);   // the run is complete; its optimiser state is no longer needed
        }
        _comm?.Barrier();                         // every rank returns once the artifact is written
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

    /// <summary>
    /// The trainable tensors (CPU copies) of the evaluation with the lowest <c>eval_loss</c> so far, for
    /// <see cref="TrainingOptions.KeepBest"/>. Every rank evaluates the same examples, so every rank keeps the same step.
    /// </summary>
    private sealed class BestWeights : IDisposable
    {
        public int Step { get; private set; } = -1;
        public double Loss { get; private set; } = double.PositiveInfinity;
        /// <summary>The kept step's evaluation (only its loss when it was restored from a checkpoint).</summary>
        public IReadOnlyDictionary<string, double> Evaluation { get; private set; } = new Dictionary<string, double>();
        public Dictionary<string, Tensor>? Tensors { get; private set; }
        /// <summary>The kept weights' step and loss for the checkpoint (null while nothing is kept).</summary>
        public int? KeptStep => Tensors is null ? null : Step;
        public double? KeptLoss => Tensors is null ? null : Loss;

        public void Consider(int step, IReadOnlyDictionary<string, double> evaluation, ITrainingObjective objective)
        {
            if (!evaluation.TryGetValue("eval_loss", out double loss) || !(loss < Loss)) return;
            using var noGrad = no_grad();
            Restore(step, loss, objective.TrainableState().ToDictionary(kv => kv.Key, kv => kv.Value.detach().to(CPU, copy: true).DetachFromDisposeScope()));
            Evaluation = evaluation;
        }

        public void Restore(int step, double loss, Dictionary<string, Tensor> tensors)
        {
            Dispose();
            Step = step; Loss = loss; Tensors = tensors;
            Evaluation = new Dictionary<string, double> { ["eval_loss"] = loss };
        }

        public void Dispose()
        {
            foreach (var t in Tensors?.Values ?? Enumerable.Empty<Tensor>()) t.Dispose();
            Tensors = null;
        }
    }

    /// <summary>Part <paramref name="i"/> of <paramref name="items"/> cut into <paramref name="parts"/> near-equal consecutive parts.</summary>
    private static List<EncodedExample> Part(List<EncodedExample> items, int parts, int i)
    {
        int from = (int)((long)items.Count * i / parts), to = (int)((long)items.Count * (i + 1) / parts);
        return items.GetRange(from, to - from);
    }

    /// <summary>
    /// The step's loss counts and token count over every rank, this rank's token count, and whether any rank was
    /// asked to stop: one all-reduce of six numbers (float64, exact for any count this loop sees).
    /// </summary>
    private (LossCounts Task, LossCounts Replay, long Tokens, long RankTokens, bool AnyCancel) StepCounts(List<EncodedExample> rows, List<EncodedExample> replay, bool cancel)
    {
        var t = LossCounts.Of(rows);
        var r = LossCounts.Of(replay);
        long rankTokens = rows.Sum(e => (long)e.Ids.Length) + replay.Sum(e => (long)e.Ids.Length);
        var v = new double[] { t.LmWeight, t.GatedPositions, r.LmWeight, r.GatedPositions, rankTokens, cancel ? 1 : 0 };
        if (_comm is not null)
        {
            using var buffer = tensor(v, ScalarType.Float64, _device);
            _comm.AllReduceSum(buffer);
            v = buffer.cpu().data<double>().ToArray();
        }
        return (new LossCounts(v[0], v[1]), new LossCounts(v[2], v[3]), (long)v[4], rankTokens, v[5] > 0);
    }

    /// <summary>Sums every trainable parameter's gradient over the ranks, in one flat float32 buffer.</summary>
    private void AllReduceGradients()
    {
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        var ps = _objective.Parameters;
        // (Σ numel + P,): every gradient (zeros where a rank has none), then one flag per parameter, so a parameter no
        // rank computed a gradient for keeps none — as in a single process, where AdamW then skips it.
        var hasGrad = tensor(ps.Select(p => p.grad is null ? 0f : 1f).ToArray(), device: _device);
        var flat = cat(ps.Select(p => (p.grad ?? zeros_like(p)).to(ScalarType.Float32).reshape(-1)).Append(hasGrad).ToList());
        _comm!.AllReduceSum(flat);
        var any = flat.narrow(0, flat.shape[0] - ps.Count, ps.Count).cpu().data<float>().ToArray();
        long at = 0;
        for (int i = 0; i < ps.Count; i++)
        {
            var p = ps[i];
            var sum = flat.narrow(0, at, p.numel()).view_as(p).to(p.dtype);
            if (p.grad is { } g) g.copy_(sum); else if (any[i] > 0) p.grad = sum.clone().DetachFromDisposeScope();
            at += p.numel();
        }
    }

    /// <summary>The step's logged parts summed over the ranks (each rank's are its additive share of the step's means).</summary>
    private Dictionary<string, double> AllReduceParts(Dictionary<string, double> parts)
    {
        var names = parts.Keys.Order(StringComparer.Ordinal).ToList();
        using var buffer = tensor(names.Select(n => parts[n]).ToArray(), ScalarType.Float64, _device);
        _comm!.AllReduceSum(buffer);
        var summed = buffer.cpu().data<double>().ToArray();
        return names.Select((n, i) => (n, summed[i])).ToDictionary(x => x.n, x => x.Item2);
    }

    /// <summary>
    /// Every rank must train the same parameters on the same data with the same settings: rank 0's signature
    /// (parameter count and shapes, the run's fingerprint) is compared on every rank, and any difference stops all
    /// of them with the same message instead of a hang or a silent divergence.
    /// </summary>
    private void CheckSameRun(string fingerprint)
    {
        if (_comm is null) return;
        var ps = _objective.Parameters;
        ulong shapes = 17;   // a hash of every parameter's shape, in order
        foreach (var p in ps)
            foreach (long d in p.shape.Prepend(p.shape.Length)) shapes = unchecked(shapes * 1_099_511_628_211 + (ulong)d);
        // Four numbers below 2⁵² (exact in float64): tensor count, value count, the shape hash and the run's fingerprint.
        var mine = new double[] { ps.Count, ps.Sum(p => (double)p.numel()), shapes >> 12, Convert.ToInt64(fingerprint[..12], 16) };
        using var theirs = tensor(mine, ScalarType.Float64, _device);
        _comm.Broadcast(theirs, root: 0);
        var root = theirs.cpu().data<double>().ToArray();
        using var differs = tensor(new double[] { root.SequenceEqual(mine) ? 0 : 1 }, ScalarType.Float64, _device);
        _comm.AllReduceSum(differs);
        int n = (int)differs.cpu().item<double>();
        if (n > 0)
            throw new MeteoraException($"data-parallel training: {n} of {_world} ranks have other trainable parameters, data or settings than rank 0 " +
                $"(rank {_rank}: {(root.SequenceEqual(mine) ? "same as rank 0" : $"{mine[0]} tensors of {mine[1]} values vs rank 0's {root[0]} of {root[1]}, or another data fingerprint")})");
    }

    /// <summary>Rank 0's trainable tensors replace every other rank's (after any resume), so all start from the same weights.</summary>
    private void BroadcastTrainableState()
    {
        if (_comm is null) return;
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        var state = _objective.TrainableState().Select(kv => (kv.Key, Value: kv.Value.detach().clone())).ToList();
        foreach (var (_, t) in state) _comm.Broadcast(t, root: 0);
        _objective.LoadTrainableState(state.ToDictionary(x => x.Key, x => x.Value));
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
        // Graphed and step-by-step steps are the same steps: a run may resume in either mode (and checkpoints from before the
        // option existed still match).
        var o = _options with { Resume = false, StopAfter = null, EvalEvery = 0, CheckpointEvery = 0, CudaGraphs = null };
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
