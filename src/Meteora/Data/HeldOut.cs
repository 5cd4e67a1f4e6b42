namespace Meteora.Data;

/// <summary>
/// The held-out share of a task's training examples, as every trainer takes it: the indices shuffled by the given
/// generator, the first ⌊fraction × count⌉ held out — at least one when the task has two or more examples, none when
/// the fraction is 0.
/// </summary>
public static class HeldOut
{
    /// <summary>Indices 0 … <paramref name="count"/> − 1 split into training and held-out ones, both in the shuffled order.</summary>
    public static (int[] Train, int[] Held) Split(int count, double fraction, Random rng)
    {
        var order = Enumerable.Range(0, count).ToArray();
        rng.Shuffle(order);
        int held = Count(count, fraction);
        return (order[held..], order[..held]);
    }

    /// <summary>How many of <paramref name="count"/> examples <see cref="Split"/> holds out.</summary>
    public static int Count(int count, double fraction) => fraction > 0 && count >= 2 ? Math.Max(1, (int)Math.Round(fraction * count)) : 0;
}
