
using Meteora.Data;

namespace Meteora.Training;

/// <summary>
/// Training sequences in which problems are first listed, then restated one per line with their answers
/// (<see cref="TrainingOptions.RestateShare"/>): "1. p₁\n2. p₂\n3. p₃\n1. p₁ r₁\n2. p₂ r₂\n3. p₃ r₃\n", in one to
/// <see cref="MaxRounds"/> rounds. It is the layout of a multi-problem prompt answered line by line (a composite
/// prompt's answer block) built from nothing but the task data's own prompts and responses: an adapter trained only
/// on "BOS prompt → response" never predicts its own prompt's tokens, so merged into the base it garbles restating
/// them, and a gate trained that way never saw a problem whose earlier listing is followed by another task's line.
/// The restated lines (problem and answer) are in the LM loss, the list is not; every token is labelled with its
/// line's task for the gate loss. The example the sequence is built for sits in the last round; the others are
/// drawn from the same data, of other tasks where there are any.
/// </summary>
public static class RestatedLists
{
    /// <summary>Most list-then-answers rounds in one sequence (each round of 2…<see cref="TrainingOptions.RestateItems"/> problems).</summary>
    public const int MaxRounds = 3;

    /// <summary>
    /// The rounds for example <paramref name="index"/> of <paramref name="pool"/>, or null when it keeps its plain form
    /// (chosen by seed and index, a share <see cref="TrainingOptions.RestateShare"/> of them). Deterministic in
    /// (seed, index): a resumed run rebuilds the same sequences.
    /// </summary>
    public static List<List<(TaskExample Example, int Task)>>? RoundsFor(int index, IReadOnlyList<(TaskExample Example, int Task)> pool, TrainingOptions options) =>
        RoundsFor(index, pool, ByTask(pool), options);

    /// <summary>Row indices of <paramref name="pool"/> by task: computed once per pool, not once per example drawn from it.</summary>
    private static Dictionary<int, int[]> ByTask(IReadOnlyList<(TaskExample Example, int Task)> pool) =>
        pool.Select((r, i) => (r.Task, i)).GroupBy(x => x.Task).ToDictionary(g => g.Key, g => g.Select(x => x.i).ToArray());

    private static List<List<(TaskExample Example, int Task)>>? RoundsFor(int index, IReadOnlyList<(TaskExample Example, int Task)> pool,
        Dictionary<int, int[]> byTask, TrainingOptions options)
    {
        if (options.RestateShare <= 0 || pool.Count == 0) return null;
        var rng = new Random(unchecked(options.Seed * 1_000_033 + index * 7_927 + 211));
        if (rng.NextDouble() >= options.RestateShare) return null;
        var target = pool[index];
        var tasks = byTask.Keys.Order().ToArray();
        int rounds = rng.Next(1, MaxRounds + 1);
        var result = new List<List<(TaskExample, int)>>(rounds);
        for (int r = 0; r < rounds; r++)
        {
            int items = rng.Next(2, Math.Max(2, options.RestateItems) + 1);
            bool last = r == rounds - 1;
            // Tasks of the round: distinct where the data has enough of them (the target's first in the last round).
            var roundTasks = tasks.OrderBy(_ => rng.Next()).ToList();
            if (last) { roundTasks.Remove(target.Task); roundTasks.Insert(0, target.Task); }
            var round = new List<(TaskExample, int)>(items);
            for (int i = 0; i < items; i++)
            {
                if (last && i == 0) { round.Add(target); continue; }
                var ids = byTask[roundTasks[i % roundTasks.Count]];
                round.Add(pool[ids[rng.Next(ids.Length)]]);
            }
            if (last)   // the target at a random place of its round, not always first
            {
                int at = rng.Next(items);
                (round[0], round[at]) = (round[at], round[0]);
            }
            result.Add(round);
        }
        return result;
    }

    /// <summary>
    /// Every example of <paramref name="pool"/> encoded for training: as a restated-list sequence when
    /// <see cref="RoundsFor"/> picks it, otherwise plainly, after <paramref name="contextFor"/>(index) (<see cref="InContextExamples"/>).
    /// </summary>
    public static List<EncodedExample> EncodeAll(SequenceEncoder encoder, IReadOnlyList<(TaskExample Example, int Task)> pool,
        TrainingOptions options, Func<int, string> contextFor)
    {
        var byTask = ByTask(pool);
        return pool.Select((row, i) => RoundsFor(i, pool, byTask, options) is { } rounds
            ? encoder.Restated(rounds, row.Task, options.RestateCopyWeight)
            : encoder.Encode(row.Example, row.Task, contextFor(i))).ToList();
    }

    /// <summary>
    /// Replaces the examples that <see cref="RoundsFor"/> picks in <paramref name="train"/> (encoded from
    /// <paramref name="rows"/>, index for index) by their restated-list sequences; returns how many it replaced.
    /// </summary>
    public static int Replace(List<EncodedExample> train, IReadOnlyList<(TaskExample Example, int Task)> rows, SequenceEncoder encoder, TrainingOptions options)
    {
        if (train.Count != rows.Count) throw new ArgumentException("one row per training example", nameof(rows));
        var byTask = ByTask(rows);
        int replaced = 0;
        for (int i = 0; i < train.Count; i++)
            if (RoundsFor(i, rows, byTask, options) is { } rounds)
            {
                train[i] = encoder.Restated(rounds, rows[i].Task, options.RestateCopyWeight);
                replaced++;
            }
        return replaced;
    }
}
