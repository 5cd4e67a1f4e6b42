using Meteora.Data;
using Meteora.Tokenization;

namespace Meteora.Training;

/// <summary>
/// Pretraining documents made on demand: document i is <see cref="GenericCorpus.Document"/> from a generator seeded
/// by (seed, i), so no text is held in memory (only the data order's index per document), every process sees the
/// same documents, and a resumed run continues on exactly the documents it would have seen. Examples may be
/// requested from several threads.
/// </summary>
public sealed class GeneratedDocuments : IExampleSource
{
    private readonly SequenceEncoder _encoder;
    private readonly int _seed, _chars, _first;

    /// <param name="tokenizer">the base's tokenizer (BOS + text + EOS per document)</param>
    /// <param name="count">documents in the set</param>
    /// <param name="first">index of the first document: disjoint ranges make disjoint train and held-out sets</param>
    /// <param name="seed">corpus seed</param>
    /// <param name="maxSeqLen">tokens per sequence; documents fill it (one token per byte) less the two special tokens</param>
    /// <param name="eosId">the end-of-sequence token appended to every document</param>
    public GeneratedDocuments(HfTokenizer tokenizer, int count, int first, int seed, int maxSeqLen, int eosId)
    {
        if (count < 1) throw new MeteoraException("--documents: at least one document is needed");
        _encoder = new SequenceEncoder(tokenizer, maxSeqLen, responseOnly: false, eosId);
        Count = count; _first = first; _seed = seed; _chars = maxSeqLen - 2;
        Tasks = new int[count];
    }

    /// <summary>Documents in the set.</summary>
    public int Count { get; }
    /// <summary>Every document's group: 0 (one group).</summary>
    public IReadOnlyList<int> Tasks { get; }
    /// <summary>The generator's version and this set's seed, range and length.</summary>
    public string Fingerprint => $"generic-corpus {GenericCorpus.Version} seed {_seed} first {_first} count {Count} chars {_chars}";

    /// <summary>The text of document <paramref name="i"/> of this set.</summary>
    public string Text(int i) => TextOf(_seed, _first + i, _chars);

    /// <summary>Document <paramref name="index"/> of the corpus with <paramref name="seed"/>, of at most about <paramref name="chars"/> characters.</summary>
    public static string TextOf(int seed, int index, int chars) => GenericCorpus.Document(new Random(Mix(seed, index)), chars);

    /// <summary>Document <paramref name="index"/>, tokenized: BOS + text + EOS, every position in the loss.</summary>
    public EncodedExample this[int index]
    {
        get
        {
            if ((uint)index >= (uint)Count) throw new ArgumentOutOfRangeException(nameof(index));
            string text = Text(index);               // the costly part: safe on any thread
            lock (_encoder) return _encoder.Encode(new TaskExample(text, ""));   // one tokenizer call at a time
        }
    }

    public IEnumerator<EncodedExample> GetEnumerator()
    {
        for (int i = 0; i < Count; i++) yield return this[i];
    }

    System.Collections.IEnumerator System.Collections.IEnumerable.GetEnumerator() => GetEnumerator();

    /// <summary>SplitMix-style mixing of (seed, index) into one generator seed, the same in every process.</summary>
    private static int Mix(int seed, int index)
    {
        ulong z = unchecked((ulong)seed * 0x9E3779B97F4A7C15UL + (ulong)index + 0x632BE59BD9B4E019UL);
        z = unchecked((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL);
        z = unchecked((z ^ (z >> 27)) * 0x94D049BB133111EBUL);
        return (int)(z ^ (z >> 31)) & int.MaxValue;
    }
}
