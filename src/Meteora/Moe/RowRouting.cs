using Meteora.Runtime;
using TorchSharp;
using static TorchSharp.torch;

namespace Meteora.Moe;

/// <summary>
/// Routing chosen per batch row instead of per call (serving: every request in a batched step keeps its own
/// mode, top-k and temperature). Each row is routed by the gates (<see cref="GatesMode"/>) with its own top-k
/// and temperature, forced onto one adapter (mode = adapter index, weight 1), or given no adapter at all
/// (<see cref="BaseMode"/>: the base model's output exactly). Set on <see cref="RoutingOptions.Rows"/>; it then
/// takes precedence over the call-wide top-k, temperature and <see cref="RoutingOptions.Forced"/>.
/// <para>
/// The settings live in device tensors of fixed address, updated in place by <see cref="Upload"/>, so a decode
/// step that reads them can be captured into a CUDA graph once and replayed with other requests in the rows.
/// With <see cref="Usage"/>, every projection adds the routing weights of each row's last position into
/// <c>(B, G, N)</c> by layer group: what the gates chose for the token a step produces.
/// </para>
/// </summary>
public sealed class RowRouting : IDisposable
{
    /// <summary>Mode of a row routed by the gates.</summary>
    public const long GatesMode = -1;
    /// <summary>Mode of a row that uses no adapter (the base model).</summary>
    public const long BaseMode = -2;
    /// <summary>Smallest routing temperature: below it 1/T overflows float32 and the weights become NaN.</summary>
    public const double MinTemperature = 1e-3;

    private readonly long[] _mode, _topK;
    private readonly float[] _temperature;

    /// <summary>Rows B.</summary>
    public int Rows { get; }
    /// <summary>Adapters N.</summary>
    public int Adapters { get; }
    /// <summary>(B,) int64: <see cref="GatesMode"/>, <see cref="BaseMode"/> or a forced adapter index.</summary>
    public Tensor Mode { get; }
    /// <summary>(B,) int64: adapters per token for gate-routed rows, 1…N.</summary>
    public Tensor TopK { get; }
    /// <summary>(B,) float32: softmax temperature over each row's top-k logits.</summary>
    public Tensor Temperature { get; }
    /// <summary>(B, G, N) float32 routing weights summed over the projections of each layer group; null = not recorded.</summary>
    public Tensor? Usage { get; }
    /// <summary>Largest top-k among the gate-routed rows (1 when none): the routing kernel takes at most 8.</summary>
    public int MaxTopK => (int)Enumerable.Range(0, Rows).Where(i => _mode[i] == GatesMode).Select(i => _topK[i]).DefaultIfEmpty(1).Max();
    /// <summary>Layer groups G of <see cref="Usage"/>.</summary>
    public int Groups { get; }
    /// <summary>Decoder layers the groups split.</summary>
    public int Layers { get; }

    /// <param name="rows">Batch rows B.</param>
    /// <param name="adapters">Adapters N.</param>
    /// <param name="layers">Decoder layers (for the layer groups).</param>
    /// <param name="groups">Layer groups of <see cref="Usage"/>; 0 = no usage recorded.</param>
    public RowRouting(int rows, int adapters, int layers, int groups, Device device)
    {
        if (rows < 1 || adapters < 1) throw new MeteoraException($"row routing needs ≥ 1 row and adapter, not {rows} and {adapters}");
        Rows = rows; Adapters = adapters; Layers = layers; Groups = Math.Clamp(groups, 0, layers);
        _mode = Enumerable.Repeat(BaseMode, rows).ToArray();
        _topK = Enumerable.Repeat(1L, rows).ToArray();
        _temperature = Enumerable.Repeat(1f, rows).ToArray();
        Mode = zeros(rows, ScalarType.Int64, device).DetachFromDisposeScope();
        TopK = zeros(rows, ScalarType.Int64, device).DetachFromDisposeScope();
        Temperature = zeros(rows, ScalarType.Float32, device).DetachFromDisposeScope();
        if (Groups > 0) Usage = zeros(rows, Groups, adapters, ScalarType.Float32, device).DetachFromDisposeScope();
        Upload();
    }

    /// <summary>Layer group of decoder layer <paramref name="layer"/>: layers split into G contiguous, near-equal runs.</summary>
    public int GroupOf(int layer) => GroupOf(layer, Groups, Layers);

    /// <summary>Layer group of <paramref name="layer"/> when <paramref name="layers"/> layers form <paramref name="groups"/> groups.</summary>
    public static int GroupOf(int layer, int groups, int layers) => groups == 0 ? 0 : Math.Min(groups - 1, layer * groups / Math.Max(1, layers));

    /// <summary>First and last layer (inclusive) of each of <paramref name="groups"/> groups of <paramref name="layers"/> layers.</summary>
    public static (int First, int Last)[] GroupLayers(int groups, int layers) =>
        Enumerable.Range(0, groups).Select(g => (Enumerable.Range(0, layers).First(l => GroupOf(l, groups, layers) == g),
            Enumerable.Range(0, layers).Last(l => GroupOf(l, groups, layers) == g))).ToArray();

    /// <summary>Routes row <paramref name="row"/> by the gates with its own top-k and temperature (call <see cref="Upload"/> after the changes).</summary>
    public void SetGates(int row, int topK, double temperature)
    {
        if (topK < 1 || topK > Adapters) throw new MeteoraException($"top_k: {topK} must be between 1 and the {Adapters} adapters");
        if (!(temperature >= MinTemperature && double.IsFinite(temperature))) throw new MeteoraException($"temperature: {temperature} must be a number ≥ {MinTemperature}");
        _mode[row] = GatesMode; _topK[row] = topK; _temperature[row] = (float)temperature;
    }

    /// <summary>Forces row <paramref name="row"/> onto adapter <paramref name="adapter"/> (weight 1).</summary>
    public void SetAdapter(int row, int adapter)
    {
        if (adapter < 0 || adapter >= Adapters) throw new MeteoraException($"adapter {adapter} outside 0…{Adapters - 1}");
        _mode[row] = adapter; _topK[row] = 1; _temperature[row] = 1f;
    }

    /// <summary>Gives row <paramref name="row"/> no adapter: the base model.</summary>
    public void SetBase(int row)
    {
        _mode[row] = BaseMode; _topK[row] = 1; _temperature[row] = 1f;
    }

    /// <summary>Copies the rows' settings into the device tensors (same addresses).</summary>
    public void Upload()
    {
        using var noGrad = no_grad();
        using var mode = tensor(_mode); using var topK = tensor(_topK); using var temperature = tensor(_temperature);
        Mode.copy_(mode); TopK.copy_(topK); Temperature.copy_(temperature);
        foreach (var (tokensPerRow, settings) in _perTokens) Fill(settings, tokensPerRow);
    }

    /// <summary>Zeroes <see cref="Usage"/> (before a step whose usage is read).</summary>
    public void ClearUsage()
    {
        using var noGrad = no_grad();
        Usage?.zero_();
    }

    /// <summary>
    /// The per-token form of the rows' settings for calls of T tokens per row, computed once per
    /// <see cref="Upload"/> (not once per projection) and updated in place, so their addresses stay fixed.
    /// </summary>
    private sealed record TokenSettings(Tensor GatesMask, Tensor RankMask, Tensor Temperature, Tensor Fixed, Tensor Indices) : IDisposable
    {
        public void Dispose()
        {
            GatesMask.Dispose(); RankMask.Dispose(); Temperature.Dispose(); Fixed.Dispose(); Indices.Dispose();
        }
    }

    private readonly Dictionary<long, TokenSettings> _perTokens = new();

    private TokenSettings SettingsFor(long tokensPerRow)
    {
        if (_perTokens.TryGetValue(tokensPerRow, out var cached)) return cached;
        long n = Rows * tokensPerRow;
        var device = Mode.device;
        var settings = new TokenSettings(
            zeros(n, 1, ScalarType.Bool, device).DetachFromDisposeScope(), zeros(n, Adapters, ScalarType.Bool, device).DetachFromDisposeScope(),
            zeros(n, 1, ScalarType.Float32, device).DetachFromDisposeScope(), zeros(n, Adapters, ScalarType.Float32, device).DetachFromDisposeScope(),
            arange(Adapters, ScalarType.Int64, device).unsqueeze(0).expand(n, Adapters).contiguous().DetachFromDisposeScope());
        Fill(settings, tokensPerRow);
        _perTokens[tokensPerRow] = settings;
        return settings;
    }

    /// <summary>Writes the rows' current settings into <paramref name="s"/>: which tokens the gates route, which ranks are past each row's k, the fixed weights of forced and base rows.</summary>
    private void Fill(TokenSettings s, long tokensPerRow)
    {
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        var mode = Expand(Mode, tokensPerRow);                                             // (B·T,)
        var rank = arange(Adapters, ScalarType.Int64, Mode.device).unsqueeze(0);          // (1, N)
        s.GatesMask.copy_(mode.eq(GatesMode).unsqueeze(1));                               // (B·T, 1)
        s.RankMask.copy_(rank.ge(Expand(TopK, tokensPerRow).unsqueeze(1)));                // (B·T, N): past the row's top-k
        s.Temperature.copy_(Expand(Temperature, tokensPerRow).unsqueeze(1));               // (B·T, 1)
        var forced = nn.functional.one_hot(mode.clamp_min(0), Adapters).to(ScalarType.Float32);   // (B·T, N)
        s.Fixed.copy_(forced.mul_(mode.ge(0).unsqueeze(1)));                               // one-hot for forced rows, 0 for base rows
    }

    /// <summary>
    /// Dense routing weights (B·T, N) float32 for logits (B·T, N) of B rows of T tokens: per gate-routed row the
    /// inference form (top-k of the raw logits, softmax(top-k / T), 1 when k = 1, 0 elsewhere); one-hot for forced
    /// rows; zeros for base rows. Device ops only, at fixed shapes (a CUDA graph can capture them).
    /// </summary>
    public Tensor Route(Tensor logits, long tokensPerRow)
    {
        using var scope = NewDisposeScope();
        var s = SettingsFor(tokensPerRow);
        var (sorted, order) = logits.to(ScalarType.Float32).sort(-1, descending: true, stable: true);   // (B·T, N) each; ties to the lower index
        var weights = sorted.div_(s.Temperature).masked_fill_(s.RankMask, HeldScalars.NegativeInfinity).softmax(-1);   // 0 past each row's k
        var gate = zeros_like(weights).scatter_(1, order, weights);                        // (B·T, N) in adapter order
        return where(s.GatesMask, gate, s.Fixed).MoveToOuterDisposeScope();
    }

    /// <summary>(B·T, N) bool: per token, the sorted positions from its row's top-k on (what <see cref="ExactRanking"/> tests the gap at).</summary>
    internal Tensor PastTopK(long tokensPerRow) => SettingsFor(tokensPerRow).RankMask;

    /// <summary>(B·T, N) int64 adapter indices 0…N−1 per token: the slots that go with <see cref="Route"/>'s dense weights.</summary>
    public Tensor Indices(long tokensPerRow) => SettingsFor(tokensPerRow).Indices;

    /// <summary>Adds each row's last-position weights <paramref name="route"/> (B·T, N) into <see cref="Usage"/>'s group of <paramref name="layer"/>.</summary>
    public void AddUsage(Tensor route, long tokensPerRow, int layer)
    {
        if (Usage is null) return;
        using var scope = NewDisposeScope();
        var last = route.view(Rows, tokensPerRow, Adapters).select(1, tokensPerRow - 1);    // (B, N)
        Usage.select(1, GroupOf(layer)).add_(last, HeldScalars.One);
    }

    private Tensor Expand(Tensor perRow, long tokensPerRow) =>
        tokensPerRow == 1 ? perRow : perRow.repeat_interleave(tokensPerRow);

    public void Dispose()
    {
        Mode.Dispose(); TopK.Dispose(); Temperature.Dispose(); Usage?.Dispose();
        foreach (var settings in _perTokens.Values) settings.Dispose();
    }
}
