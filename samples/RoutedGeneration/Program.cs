// Loads a LLaMA base and a MeteoRA checkpoint, generates greedily with the routing recorded, and prints which
// adapter each token went to (the top-1 choice, by majority over all MeteoRA projections).
//
//   dotnet run -- <base folder> <meteora folder> "<prompt>" [max new tokens] [top-k]
using Meteora.Generation;
using Meteora.Moe;
using Meteora.Runtime;
using Meteora.Tokenization;
using static TorchSharp.torch;

if (args.Length < 3)
{
    Console.Error.WriteLine("usage: RoutedGeneration <base folder> <meteora folder> <prompt> [max new tokens] [top-k]");
    return 2;
}
string baseFolder = args[0], meteoraFolder = args[1], prompt = args[2];
int maxNew = args.Length > 3 ? int.Parse(args[3]) : 12;
int topK = args.Length > 4 ? int.Parse(args[4]) : 2;

try
{
    TorchRuntime.EnsureBackend();     // a missing libtorch is one line here, not a TypeInitializationException later
    using var tokenizer = HfTokenizer.Load(baseFolder);
    using var model = MeteoraModel.Load(baseFolder, meteoraFolder, CPU, ScalarType.Float32);
    model.Configure(topK: topK);
    using var recorder = new RoutingRecorder { RecordIndices = true };
    model.Attach(recorder);

    int[] promptIds = tokenizer.Encode(prompt);
    int[] generated = model.Generate([promptIds], new GenerationOptions { MaxNewTokens = maxNew })[0];

    // Trace(): per projection, one (k indices) row per routed token: the prompt's tokens from prefill, then one per
    // decode step (the last generated token is never fed back, so it has no routing).
    var trace = recorder.Trace();
    int[] all = [.. promptIds, .. generated];
    int routed = trace.Values.Min(rows => rows.Length);
    Console.WriteLine($"{model.AdapterNames.Count} adapters ({string.Join(", ", model.AdapterNames)}), top-{topK}, {trace.Count} projections");
    Console.WriteLine($"prompt: {prompt}");
    Console.WriteLine($"output: {tokenizer.Decode(generated)}");
    for (int t = 0; t < routed; t++)
    {
        var votes = new int[model.AdapterNames.Count];
        foreach (var rows in trace.Values) votes[rows[t][0]]++;
        int best = Array.IndexOf(votes, votes.Max());
        string piece = tokenizer.Decode([all[t]]).Replace("\n", "\\n");
        string role = t < promptIds.Length ? "prompt" : "output";
        Console.WriteLine($"{t,4} {role} {piece,-12} -> {model.AdapterNames[best]} ({votes[best]}/{trace.Count} projections)");
    }
    return 0;
}
catch (Meteora.MeteoraException e)
{
    Console.Error.WriteLine($"error: {e.Message}");
    return 1;
}
