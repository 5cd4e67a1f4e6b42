using Meteora.Serving;
using Prometheus;

namespace Meteora.Server;

/// <summary>
/// The server's Prometheus metrics (GET /metrics, text format), in a registry of its own so that several servers
/// in one process (tests) do not share counters: requests running and waiting, time to first token, inter-token
/// latency, end-to-end latency, prompt and generated tokens, finished requests by reason, and how often each
/// adapter had the largest routing weight in each layer group.
/// </summary>
public sealed class ServerMetrics
{
    private static readonly double[] LatencyBuckets = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60];
    private readonly Gauge _running, _waiting;
    private readonly Histogram _ttft, _itl, _e2e;
    private readonly Counter _promptTokens, _generationTokens, _finished, _selections;

    public CollectorRegistry Registry { get; } = Metrics.NewCustomRegistry();

    public ServerMetrics(ServingEngine engine)
    {
        var f = Metrics.WithCustomRegistry(Registry);
        _running = f.CreateGauge("meteora_requests_running", "Sequences prefilling or decoding.");
        _waiting = f.CreateGauge("meteora_requests_waiting", "Sequences waiting for a KV-cache row.");
        var buckets = new HistogramConfiguration { Buckets = LatencyBuckets };
        _ttft = f.CreateHistogram("meteora_time_to_first_token_seconds", "From a request's arrival to its first token.", buckets);
        _itl = f.CreateHistogram("meteora_inter_token_latency_seconds", "Between consecutive tokens of a sequence.", buckets);
        _e2e = f.CreateHistogram("meteora_e2e_request_latency_seconds", "From a sequence's arrival to its end.", buckets);
        _promptTokens = f.CreateCounter("meteora_prompt_tokens_total", "Prompt tokens prefilled.");
        _generationTokens = f.CreateCounter("meteora_generation_tokens_total", "Tokens generated.");
        _finished = f.CreateCounter("meteora_requests_finished_total", "Sequences ended, by finish reason.", "finish_reason");
        _selections = f.CreateCounter("meteora_adapter_selections_total",
            "Gate-routed generated tokens whose mean routing weight over a layer group was largest for an adapter.", "layer_group", "adapter");
        var groups = engine.RoutingGroups.Select(g => g.First == g.Last ? $"{g.First}" : $"{g.First}-{g.Last}").ToArray();
        Registry.AddBeforeCollectCallback(() =>
        {
            _running.Set(engine.Running);
            _waiting.Set(engine.Waiting);
            var counts = engine.SelectionCounts();
            for (int g = 0; g < counts.GetLength(0); g++)
                for (int a = 0; a < counts.GetLength(1); a++)
                    _selections.WithLabels(groups[g], engine.Model.AdapterNames[a]).IncTo(counts[g, a]);
        });
    }

    public void FirstToken(TimeSpan sinceArrival) => _ttft.Observe(sinceArrival.TotalSeconds);
    public void NextToken(TimeSpan sinceLast) => _itl.Observe(sinceLast.TotalSeconds);

    public void Finished(FinishEvent f, TimeSpan sinceArrival)
    {
        _e2e.Observe(sinceArrival.TotalSeconds);
        _promptTokens.Inc(f.PromptTokens);
        _generationTokens.Inc(f.CompletionTokens);
        _finished.WithLabels(f.Reason).Inc();
    }

    /// <summary>Writes the Prometheus text exposition.</summary>
    public Task WriteAsync(Stream output, CancellationToken cancel) => Registry.CollectAndExportAsTextAsync(output, cancel);
}
