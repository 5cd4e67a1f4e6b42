using System.Threading.Channels;
using TorchSharp;
using static TorchSharp.torch;

namespace Meteora.Serving;

/// <summary>Where a request is in the engine: waiting for a row, prefilling its prompt in chunks, decoding, finished.</summary>
public enum RequestState { Waiting, Prefilling, Decoding, Finished }

/// <summary>
/// One sequence in the engine (an OpenAI choice): its prompt, sampling and routing, and its state as the engine
/// loop moves it along. The engine thread alone changes the state; the caller reads <see cref="Events"/>.
/// </summary>
public sealed class EngineRequest
{
    private readonly Channel<EngineEvent> _events = Channel.CreateUnbounded<EngineEvent>(new UnboundedChannelOptions { SingleReader = true, SingleWriter = true });

    public string Id { get; }
    public int[] Prompt { get; }
    public SamplingSettings Sampling { get; }
    public RouteChoice Route { get; }
    public CancellationToken Cancellation { get; }
    /// <summary>Tokens, then one <see cref="FinishEvent"/>; the channel completes after it.</summary>
    public ChannelReader<EngineEvent> Events => _events.Reader;
    /// <summary>When the request was submitted (for latency metrics).</summary>
    public DateTime Arrival { get; } = DateTime.UtcNow;

    internal RequestState State { get; set; } = RequestState.Waiting;
    /// <summary>KV-cache row, −1 while waiting.</summary>
    internal int Slot { get; set; } = -1;
    /// <summary>Prompt tokens already in the cache (prefill progress).</summary>
    internal int Prefilled { get; set; }
    /// <summary>Cache slot of the next token fed (= tokens in the cache).</summary>
    internal int Position { get; set; }
    internal int NextToken { get; set; }
    internal List<int> Generated { get; } = new();
    internal OutputText Text { get; }
    internal Generator? Random { get; }

    internal EngineRequest(string id, int[] prompt, SamplingSettings sampling, RouteChoice route, OutputText text, CancellationToken cancellation)
    {
        Id = id; Prompt = prompt; Sampling = sampling; Route = route; Text = text; Cancellation = cancellation;
        if (!Greedy) Random = new Generator((ulong)(sampling.Seed ?? System.Random.Shared.NextInt64()));
    }

    /// <summary>Temperature 0 — or below 1e-5, where dividing the logits by it would overflow float32 — picks the argmax.</summary>
    internal bool Greedy => Sampling.Temperature < 1e-5;

    internal void Emit(EngineEvent e) => _events.Writer.TryWrite(e);

    /// <summary>Sends the finish event and closes the stream.</summary>
    internal void Finish(string reason, string? error = null)
    {
        if (State == RequestState.Finished) return;
        State = RequestState.Finished;
        string rest = reason == "abort" ? "" : Text.Flush();
        _events.Writer.TryWrite(new FinishEvent(reason, rest, Prompt.Length, Generated.Count, error));
        _events.Writer.TryComplete();
        Random?.Dispose();
    }
}
