using Meteora.Moe;

namespace Meteora.Demo;

/// <summary>
/// Sizes of every stage of <see cref="DemoRunner"/>: the built-in task suite, the base, the per-task LoRAs, the
/// LoRA-B baseline, gate training and the evaluations. <see cref="Full"/> trains the gates over the shipped base and
/// adapters and evaluates everything within ten minutes on two CPU cores; with <see cref="FromScratch"/> it first
/// rebuilds base and adapters with the settings below (about six minutes on one H200). <see cref="Quick"/> is a
/// smoke run of the whole pipeline from nothing on a tiny base (about a minute on two cores).
/// </summary>
public sealed record DemoSettings
{
    /// <summary>Tasks of the built-in suite (null: all twelve).</summary>
    public IReadOnlyList<string>? Tasks { get; init; }
    public int TrainPerTask { get; init; } = 500;
    public int TestPerTask { get; init; } = 50;
    public int DataSeed { get; init; } = 0;

    /// <summary>
    /// The demo's base model. The default demo loads the one shipped in <c>models/meteora-demo/base</c>, which
    /// <c>demo --from-scratch --device cuda</c> rebuilds with these settings: 8 layers of width 256 (8 heads of 32,
    /// 4 key-value heads), pretrained in bfloat16 on generated documents of 2 048 bytes, long enough for composite
    /// prompts (composite-5 ≈ 860 bytes with its answers, composite-10 ≈ 1 900).
    /// </summary>
    public int BaseLayers { get; init; } = 8;
    public int BaseHidden { get; init; } = 256;
    public int BaseIntermediate { get; init; } = 704;
    public int BaseHeads { get; init; } = 8;
    public int BaseKvHeads { get; init; } = 4;
    public int BaseSteps { get; init; } = 2500;
    public int BaseBatch { get; init; } = 32;
    /// <summary>Pretraining document length in tokens (one per byte).</summary>
    public int BaseSeqLen { get; init; } = 2048;
    public double BaseLr { get; init; } = 2e-3;
    public double BaseWeightDecay { get; init; } = 0.05;
    /// <summary>Safetensors shard size of the base's weights (MB): each shard stays well under what a device run brings back.</summary>
    public double BaseShardMb { get; init; } = 10;

    /// <summary>
    /// Build the base and the task adapters here instead of loading the shipped ones (<c>--from-scratch</c>; the quick
    /// demo always does, on its tiny base).
    /// </summary>
    public bool FromScratch { get; init; }

    public int LoraRank { get; init; } = 8;
    /// <summary>
    /// Projections the task adapters (and LoRA-B) adapt, as a PEFT regex over module paths: every projection except
    /// layer 0's q/k/v. Their gates see only the token embedding (on the former 4-layer base they routed prompt tokens
    /// to the right adapter 20 % of the time against 90–94 % elsewhere; docs/RESULTS.md, ablation).
    /// </summary>
    public string LoraTargetRegex { get; init; } =
        @"model\.layers\.[1-9][0-9]*\.self_attn\.[qkv]_proj|model\.layers\.[0-9]+\.(self_attn\.o_proj|mlp\.(gate|up|down)_proj)";
    /// <summary>
    /// Steps of 32 per task adapter, or with <see cref="LoraEpochs"/> the most a task adapter trains. Half the rows are
    /// restated lists (<see cref="LoraRestateShare"/>) built from the task's own examples, so a small task's examples
    /// recur many times: with 200 steps for every task the add (135 training prompts) and subtract (95) adapters
    /// memorised them (accuracy 0.38 and 0.16), with 120 steps for every task reverse (500) was not learnt in two runs
    /// of three (0.10, 0.34). Each step also runs a rehearsal batch (<see cref="LoraReplayRows"/>). Six GPU rebuilds:
    /// docs/RESULTS.md.
    /// </summary>
    public int LoraSteps { get; init; } = 200;
    /// <summary>
    /// Micro-batches of similar-length sequences for the task LoRAs, LoRA-B and the gates (<c>--length-buckets</c>):
    /// plain examples (~40 tokens) beside restated lists (~150–500) would otherwise pad most batches to the longest.
    /// </summary>
    public bool LengthBuckets { get; init; } = true;
    /// <summary>
    /// Task LoRAs hold out 10 % of their training prompts and keep the weights of the evaluation (every tenth of the
    /// run) with the lowest held-out loss (<c>--eval-fraction 0.1 --keep-best</c>) instead of the last step's: early
    /// stopping for tasks of very different sizes. Off by default until a GPU rebuild has measured it.
    /// </summary>
    public bool LoraKeepBest { get; init; }
    /// <summary>Tasks that train for other than <see cref="LoraSteps"/> steps (none by default).</summary>
    public IReadOnlyDictionary<string, int> LoraStepsByTask { get; init; } = new Dictionary<string, int>();
    /// <summary>
    /// Passes over each task's training examples (0: every adapter trains <see cref="LoraSteps"/> steps). When set, a
    /// task adapter trains ⌈epochs × examples / batch⌉ steps, at least <see cref="LoraMinSteps"/> and at most
    /// <see cref="LoraSteps"/>, each on its own cosine schedule: a large task gets the longer schedule a slowly learnt
    /// skill needs, a small one stops before it memorises its few prompts (docs/RESULTS.md, "One step count for every
    /// task").
    /// </summary>
    public double LoraEpochs { get; init; } = 13;
    /// <summary>Fewest steps of a task adapter under <see cref="LoraEpochs"/>: learning the format takes that many whatever the task's size.</summary>
    public int LoraMinSteps { get; init; } = 120;

    /// <summary>The fields that decide how the base and the task adapters are built (what --from-scratch uses), as text.</summary>
    public string BuildRecipe() =>
        $"{BaseLayers} {BaseHidden} {BaseIntermediate} {BaseHeads} {BaseKvHeads} {BaseSteps} {BaseBatch} {BaseSeqLen} {BaseLr} {BaseWeightDecay} {BaseShardMb} " +
        $"{LoraRank} {LoraTargetRegex} {LoraSteps} {string.Join(',', LoraStepsByTask.OrderBy(kv => kv.Key).Select(kv => $"{kv.Key}={kv.Value}"))} {LoraBatch} {LoraLr} {LoraBSteps} {LoraReplayRows} {LoraReplaySeqLen} {LoraInContextShare} {LoraInContextChars}" +
        (LoraRestateShare > 0 ? $" restate {LoraRestateShare} {RestateItems} {RestateCopyWeight}" : "") + (LengthBuckets ? " buckets" : "") + (LoraKeepBest ? " keep-best" : "") + (LoraEpochs > 0 ? $" epochs {LoraEpochs} {LoraMinSteps}" : "");

    /// <summary>LoRA steps for <paramref name="task"/>, whose adapter trains on <paramref name="trainExamples"/> examples.</summary>
    public int LoraStepsFor(string task, int trainExamples) =>
        LoraStepsByTask.TryGetValue(task, out int steps) ? steps
        : LoraEpochs > 0 ? Math.Clamp((int)Math.Ceiling(LoraEpochs * trainExamples / LoraBatch), Math.Clamp(LoraMinSteps, 1, LoraSteps), LoraSteps)
        : LoraSteps;
    /// <summary>
    /// 32 sequences per step (on the former 4-layer base, 300 × 32 learnt the slow tasks as well as 600 × 16 in ~60 %
    /// of the time: per-op overhead dominates a step of a small model).
    /// </summary>
    public int LoraBatch { get; init; } = 32;
    public double LoraLr { get; init; } = 3e-3;
    /// <summary>LoRA-B (one adapter, same rank, all tasks balanced) steps.</summary>
    public int LoraBSteps { get; init; } = 450;
    /// <summary>
    /// Rehearsal rows of generic text per LoRA step (task adapters and LoRA-B alike; <c>train-lora --replay</c>). A task
    /// adapter trained on its task alone unlearns the base's copying — merged into the base, the first v4 base's
    /// adapters restated 50–83 % of a composite problem's tokens and no whole line, against the bare base's 100 %
    /// (docs/RESULTS.md) — and a composite answer starts by restating its problem.
    /// </summary>
    public int LoraReplayRows { get; init; } = 4;
    /// <summary>Tokens per rehearsal row: as long as a composite-10 prompt's answer block reaches.</summary>
    public int LoraReplaySeqLen { get; init; } = 1024;
    /// <summary>
    /// Share of each task's (and LoRA-B's) training examples put after generic text (<c>train-lora --in-context</c>).
    /// An adapter trained only on prompts right after BOS answers them there and nowhere else: on the v4 base the
    /// length adapter answered "length: viad =>" with 4 alone but with 54 as line 2 of a composite answer block; one
    /// trained with half its examples mid-document answered 4 there too (docs/RESULTS.md).
    /// </summary>
    public double LoraInContextShare { get; init; } = 0.5;
    /// <summary>Longest generic text before an in-context example, in characters.</summary>
    public int LoraInContextChars { get; init; } = 384;
    /// <summary>
    /// Share of each task's (and LoRA-B's) training examples turned into restated lists (<c>train-lora --restate</c>):
    /// problems listed, then restated with their answers, the restated lines in the loss. A task adapter trained only
    /// on "prompt → response" never predicts its own prompt's tokens, and restating its problem is how a composite
    /// answer line starts.
    /// </summary>
    public double LoraRestateShare { get; init; } = 0.5;
    /// <summary>Most problems per restated list (LoRAs and gates).</summary>
    public int RestateItems { get; init; } = 3;
    /// <summary>LM-loss weight of a restated problem's tokens against its answer's 1 (<c>--restate-copy-weight</c>).</summary>
    public double RestateCopyWeight { get; init; } = 0.1;

    /// <summary>
    /// Top-k of the gates' training form: top-1 (on the former 4-layer base, top-1 training routed better at top-1 and
    /// as well at top-2 as top-2 training; docs/RESULTS.md, ablation).
    /// </summary>
    public int GateTopK { get; init; } = 1;
    /// <summary>
    /// Gate optimiser steps: 220 × 16 sequences, half of them restated lists, is ~3.5 min on two CPU cores (a restated
    /// batch costs ~5× a plain one), which keeps the whole CPU demo under ten minutes.
    /// </summary>
    public int GateSteps { get; init; } = 220;
    /// <summary>Seed of the gates' initialisation and batch order (<c>train-gate --seed</c>): varied to measure gate-seed noise.</summary>
    public int GateSeed { get; init; } = 42;
    public int GateBatch { get; init; } = 16;
    /// <summary>
    /// Longest gate-training sequence: the suite's examples fit 128 tokens; restated lists and in-context examples
    /// are cut to this (a restated list loses its leading rounds), which bounds the gates' cost on two CPU cores.
    /// </summary>
    public int GateMaxSeqLen { get; init; } = 256;

    /// <summary>
    /// 5e-2 (chosen on the former 4-layer base over two gate seeds against 2e-2; docs/RESULTS.md, ablation); kept for
    /// the 8 × 256 base, where 500 steps reach 90.6 % held-out gate accuracy and no other setting did better across
    /// gate seeds (docs/RESULTS.md).
    /// </summary>
    public double GateLr { get; init; } = 5e-2;
    /// <summary>
    /// Share of the gates' training examples put after generic text (<c>train-gate --in-context</c>; the text is in
    /// neither loss). Gates trained only on prompts right after BOS route them there; in a composite answer block the
    /// same problem comes after other tasks' lines. Off by default: on the run-4 models (docs/RESULTS.md) half the
    /// examples in context (≤ 192 chars, 300 steps) moved composite-3 only from 0.08 to 0.13 while tripling the
    /// gates' CPU time, beyond the demo's ten minutes.
    /// </summary>
    public double GateInContextShare { get; init; } = 0;
    /// <summary>Longest generic text before an in-context gate example, in characters.</summary>
    public int GateInContextChars { get; init; } = 384;
    /// <summary>
    /// Share of the gates' training examples turned into restated lists of problems from different tasks
    /// (<c>train-gate --restate</c>), every token labelled with its line's task: the gates see a problem restated after
    /// a list whose next line belongs to another task, as in a composite answer block.
    /// </summary>
    public double GateRestateShare { get; init; } = 0.5;

    /// <summary>Test examples per task in the per-task table.</summary>
    public int EvalLimit { get; init; } = 50;
    /// <summary>Composite sizes evaluated (MeteoRA top-2 and LoRA-B; Arrow at <see cref="ArrowCompositeSizes"/>, single adapters at <see cref="SingleAdapterCompositeSizes"/>).</summary>
    public IReadOnlyList<int> CompositeSizes { get; init; } = [3, 5, 10];
    /// <summary>Composite sizes at which every single adapter is also evaluated (the "best single adapter" baseline).</summary>
    public IReadOnlyList<int> SingleAdapterCompositeSizes { get; init; } = [3, 5];
    /// <summary>
    /// Composite sizes at which Arrow is evaluated: its targets are the per-task mean and composite-3; composite-10
    /// (19–32 s of the CPU demo's ten minutes) is left out.
    /// </summary>
    public IReadOnlyList<int> ArrowCompositeSizes { get; init; } = [3, 5];
    /// <summary>
    /// Composite sizes at which MeteoRA (top-2) and LoRA-B are also scored on guided prompts (the evaluator writes each
    /// answer line's number and problem, the model completes the answers; <c>eval --composite-guided</c>): separates
    /// "cannot restate a line" from "answers the wrong task". Only composite-3: each guided line is a new prefill of
    /// the whole prompt, and guided composite-3/5/10 for three models took the CPU demo from 7.3 to 13.6 minutes.
    /// </summary>
    public IReadOnlyList<int> GuidedCompositeSizes { get; init; } = [3];
    /// <summary>Arrow's top-k (the training-free per-token routing baseline): PEFT's default.</summary>
    public int ArrowTopK { get; init; } = ArrowModel.DefaultTopK;
    public int CompositeExamples { get; init; } = 20;
    public int EvalBatch { get; init; } = 25;
    public int MaxNewTokens { get; init; } = 16;

    /// <summary>
    /// The full demo's settings with the fields a JSON file sets (same names as the properties, e.g.
    /// <c>{"BaseLayers": 12, "GateSteps": 300}</c>); an unknown field or a wrong type is a one-line error.
    /// </summary>
    public static DemoSettings Load(string path, DemoSettings defaults)
    {
        if (!File.Exists(path)) throw new MeteoraException($"{path}: settings file not found");
        try
        {
            var node = System.Text.Json.Nodes.JsonNode.Parse(File.ReadAllText(path)) as System.Text.Json.Nodes.JsonObject
                ?? throw new System.Text.Json.JsonException("the settings must be a JSON object");
            var merged = System.Text.Json.Nodes.JsonNode.Parse(System.Text.Json.JsonSerializer.Serialize(defaults))!.AsObject();
            foreach (var (key, value) in node)
            {
                if (!merged.ContainsKey(key)) throw new System.Text.Json.JsonException($"unknown field '{key}'");
                if (value is null && key != nameof(Tasks)) throw new System.Text.Json.JsonException($"field '{key}' is null");   // only Tasks means something as null
                merged[key] = value?.DeepClone();
            }
            var settings = System.Text.Json.JsonSerializer.Deserialize<DemoSettings>(merged) ?? throw new System.Text.Json.JsonException("null");
            if (!(settings.LoraEpochs >= 0 && double.IsFinite(settings.LoraEpochs)))
                throw new System.Text.Json.JsonException($"field 'LoraEpochs' is {settings.LoraEpochs}: give passes ≥ 0 (0: LoraSteps steps for every task)");
            if (settings.LoraMinSteps < 1) throw new System.Text.Json.JsonException($"field 'LoraMinSteps' is {settings.LoraMinSteps}: give at least 1");
            if (settings.LoraSteps < 1) throw new System.Text.Json.JsonException($"field 'LoraSteps' is {settings.LoraSteps}: give at least 1");
            return settings;
        }
        catch (System.Text.Json.JsonException e)
        {
            throw new MeteoraException($"{path}: invalid demo settings ({e.Message.Split('\n')[0]})");
        }
    }

    /// <summary>The ten-minute demo.</summary>
    public static DemoSettings Full => new();

    /// <summary>The smoke run used by the test script: three tasks, a few steps of everything.</summary>
    public static DemoSettings Quick => new()
    {
        Tasks = ["reverse", "translate", "upper"], TrainPerTask = 80, TestPerTask = 8, FromScratch = true,
        BaseLayers = 4, BaseHidden = 128, BaseIntermediate = 352, BaseHeads = 4, BaseKvHeads = 2,
        BaseSteps = 40, BaseBatch = 16, BaseSeqLen = 256, BaseLr = 1e-3, BaseShardMb = 0.5,
        LoraSteps = 15, LoraEpochs = 0, LoraStepsByTask = new Dictionary<string, int>(), LoraBSteps = 30, LoraReplayRows = 2, LoraReplaySeqLen = 256, LoraInContextChars = 128, GateInContextChars = 128, GateSteps = 15, GateBatch = 8,
        EvalLimit = 8, CompositeSizes = [3], SingleAdapterCompositeSizes = [3], CompositeExamples = 4, EvalBatch = 8, MaxNewTokens = 8,
    };
}
