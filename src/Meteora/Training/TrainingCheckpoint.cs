using System.Text.Json;
using Meteora.IO;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Meteora.Training;

/// <summary>
/// A resumable checkpoint folder (<c>OUT/checkpoint</c>): trainable tensors (<c>trainable.safetensors</c>),
/// optimiser state (<c>optimizer.bin</c>, TorchSharp's format) and <c>state.json</c> (step and settings). It is
/// written complete under a temporary name and swapped in by renames, so an interrupted write never replaces
/// the previous good checkpoint.
/// </summary>
internal static class TrainingCheckpoint
{
    public const string FolderName = "checkpoint";

    /// <summary>Test hook: called after the new checkpoint's files are written, before it replaces the old one.</summary>
    internal static Action<string>? BeforeCommit;

    /// <param name="BestStep">with <see cref="TrainingOptions.KeepBest"/>: the step of the weights kept so far (in best.safetensors)</param>
    /// <param name="BestLoss">their held-out loss</param>
    public sealed record State(int Step, int TotalSteps, int Seed, string Fingerprint, int? BestStep = null, double? BestLoss = null);

    private const string BestFile = "best.safetensors";

    public static string PathIn(string outDir) => System.IO.Path.Combine(outDir, FolderName);

    /// <param name="best">the trainable tensors kept by <see cref="TrainingOptions.KeepBest"/> so far, if any</param>
    public static void Save(string outDir, ITrainingObjective objective, OptimizerHelper optimizer, State state,
        IReadOnlyDictionary<string, Tensor>? best = null)
    {
        string final = PathIn(outDir);
        string temp = $"{final}.tmp-{Guid.NewGuid():N}";
        string old = $"{final}.old";
        Directory.CreateDirectory(temp);
        try
        {
            SafeTensorsWriter.Write(System.IO.Path.Combine(temp, "trainable.safetensors"), objective.TrainableState());
            optimizer.save_state_dict(System.IO.Path.Combine(temp, "optimizer.bin"));
            if (best is not null) SafeTensorsWriter.Write(System.IO.Path.Combine(temp, BestFile), best);
            File.WriteAllText(System.IO.Path.Combine(temp, "state.json"), JsonSerializer.Serialize(state));
            BeforeCommit?.Invoke(temp);
            // Swap: current → .old, new → current, drop .old. Load() falls back to .old if we die in between.
            if (Directory.Exists(old)) Directory.Delete(old, true);
            if (Directory.Exists(final)) Directory.Move(final, old);
            Directory.Move(temp, final);
            if (Directory.Exists(old)) Directory.Delete(old, true);
        }
        finally
        {
            if (Directory.Exists(temp)) Directory.Delete(temp, true);
        }
    }

    /// <summary>Removes the checkpoint (and any leftover of an interrupted swap).</summary>
    public static void Delete(string outDir)
    {
        string final = PathIn(outDir);
        foreach (var d in new[] { final, $"{final}.old" })
            if (Directory.Exists(d)) Directory.Delete(d, true);
    }

    /// <summary>The checkpoint folder to resume from (the current one, or the previous if a swap was cut short).</summary>
    public static string? Find(string outDir)
    {
        string final = PathIn(outDir);
        if (File.Exists(System.IO.Path.Combine(final, "state.json"))) return final;
        string old = $"{final}.old";
        return File.Exists(System.IO.Path.Combine(old, "state.json")) ? old : null;
    }

    /// <summary>
    /// Restores trainable tensors and optimiser state; returns the saved state and the kept best tensors (on the
    /// CPU; null when the checkpoint has none).
    /// </summary>
    public static (State State, Dictionary<string, Tensor>? Best) Load(string outDir, ITrainingObjective objective, OptimizerHelper optimizer, string fingerprint)
    {
        string folder = Find(outDir) ?? throw new MeteoraException($"{PathIn(outDir)}: no checkpoint to resume from");
        string statePath = System.IO.Path.Combine(folder, "state.json");
        State state;
        try { state = JsonSerializer.Deserialize<State>(File.ReadAllText(statePath)) ?? throw new JsonException("null"); }
        catch (JsonException e) { throw new MeteoraException($"{statePath}: invalid checkpoint state ({e.Message.Split('\n')[0]})"); }
        if (state.Fingerprint != fingerprint)
            throw new MeteoraException($"{statePath}: the checkpoint was made with other settings or data ({state.Fingerprint} ≠ {fingerprint}); resume with the same options");
        using (var file = SafeTensorsFile.Open(System.IO.Path.Combine(folder, "trainable.safetensors")))
        {
            var tensors = file.Entries.Keys.ToDictionary(k => k, k => file.Load(k));
            objective.LoadTrainableState(tensors);
            foreach (var t in tensors.Values) t.Dispose();
        }
        string opt = System.IO.Path.Combine(folder, "optimizer.bin");
        if (!File.Exists(opt)) throw new MeteoraException($"{opt}: file not found");
        try { optimizer.load_state_dict(opt); }
        catch (Exception e) when (e is not MeteoraException)
        {
            // libtorch's message spans lines and names no file: say which file and what it means.
            throw new MeteoraException($"{opt}: optimizer state does not match this run or is damaged ({e.Message.Split('\n')[0].Trim()}); start again without --resume");
        }
        Dictionary<string, Tensor>? best = null;
        if (state.BestStep is not null)
        {
            string path = System.IO.Path.Combine(folder, BestFile);
            if (!File.Exists(path)) throw new MeteoraException($"{path}: file not found (state.json names best step {state.BestStep})");
            using var file = SafeTensorsFile.Open(path);
            best = file.Entries.Keys.ToDictionary(k => k, k => file.Load(k));
        }
        return (state, best);
    }
}
