using System.CommandLine;
using Meteora.Moe;
using Meteora.Server;
using Meteora.Serving;
using Meteora.Tokenization;

namespace Meteora.Cli.Commands;

/// <summary>
/// <c>serve --model BASE (--meteora MDIR | --adapters-dir DIR) [--host 127.0.0.1 --port 8000] [--max-batch 64]
/// [--max-queue 256] [--max-context N] [--prefill-chunk 256] [--chat-template auto|plain|FILE]</c>: the OpenAI-compatible server. Runs until
/// Ctrl-C / SIGTERM, then finishes the running requests and exits.
/// </summary>
public static class ServeCommand
{
    public static Command Create(Func<ParseResult, CliContext> context)
    {
        var model = new Option<string>("--model") { Description = "Hugging Face base model folder", Required = true };
        var meteora = new Option<string?>("--meteora") { Description = "MeteoRA checkpoint folder: model \"meteora\" routes by its gates" };
        var adaptersDir = new Option<string?>("--adapters-dir") { Description = "folder of PEFT adapter folders (no gates: \"meteora\" routes by Arrow)" };
        var topK = new Option<int?>("--top-k") { Description = "default adapters per token for \"meteora\" (default: the checkpoint's; Arrow: 3)" };
        var temperature = new Option<double?>("--temperature") { Description = "default routing temperature for \"meteora\"" };
        var strategy = new Option<string>("--strategy") { Description = "mixing strategy: auto, dense, segment, gather or loop", DefaultValueFactory = _ => "auto" };
        var host = new Option<string>("--host") { Description = "address to listen on", DefaultValueFactory = _ => "127.0.0.1" };
        var port = new Option<int>("--port") { Description = "TCP port (0: any free port)", DefaultValueFactory = _ => 8000 };
        var maxBatch = new Option<int>("--max-batch") { Description = "sequences decoded together (KV-cache rows)", DefaultValueFactory = _ => 64 };
        var maxQueue = new Option<int>("--max-queue") { Description = "requests that may wait for a row; more get 429", DefaultValueFactory = _ => 256 };
        var maxContext = new Option<int?>("--max-context") { Description = "prompt + completion tokens per sequence (default: the model's positions)" };
        var prefillChunk = new Option<int>("--prefill-chunk") { Description = "prompt tokens prefilled per engine step", DefaultValueFactory = _ => 256 };
        var graphs = new Option<bool>("--cuda-graphs") { Description = "on CUDA, replay decode steps from CUDA graphs, one per batch and key-length bucket (--cuda-graphs false: eager steps)", DefaultValueFactory = _ => true };
        var chatTemplate = new Option<string>("--chat-template") { Description = "chat prompts: auto (the model's own Jinja template if it has one, else plain), plain (\"role: content\" lines), or a Jinja template file", DefaultValueFactory = _ => "auto" };
        var maxBody = new Option<long>("--max-body-bytes") { Description = "largest request body; larger get 413", DefaultValueFactory = _ => 8 * 1024 * 1024 };
        var cmd = new Command("serve", "Serve the model over an OpenAI-compatible HTTP API with continuous batching and per-token routing")
            { model, meteora, adaptersDir, topK, temperature, strategy, host, port, maxBatch, maxQueue, maxContext, prefillChunk, maxBody, graphs, chatTemplate };
        cmd.SetAction(p =>
        {
            var ctx = context(p);
            string baseFolder = p.GetValue(model)!;
            var template = p.GetValue(chatTemplate)! switch
            {
                "auto" => ModelTemplateOrPlain(baseFolder, ctx.Err),
                "plain" => null,
                string file => HfChatTemplate.FromFile(file, baseFolder),
            };
            var serverOptions = new ServerOptions { Host = p.GetValue(host)!, Port = p.GetValue(port), MaxBodyBytes = p.GetValue(maxBody), ChatTemplate = template };
            serverOptions.Validate();
            var engineOptions = new EngineOptions
            {
                MaxBatch = p.GetValue(maxBatch), MaxQueue = p.GetValue(maxQueue), MaxContext = p.GetValue(maxContext), PrefillChunk = p.GetValue(prefillChunk),
                CudaGraphs = p.GetValue(graphs),
            };
            var mixing = MixingStrategies.Parse(p.GetValue(strategy)!);
            ctx.Err.WriteLine($"serve: loading {p.GetValue(model)} on {ctx.Device} ({ctx.DType}) …");
            using var served = ServingModel.Load(p.GetValue(model)!, p.GetValue(meteora), p.GetValue(adaptersDir), ctx.Device, ctx.DType,
                p.GetValue(topK), p.GetValue(temperature), mixing);
            using var engine = new ServingEngine(served, engineOptions);
            var server = new MeteoraServer(engine, serverOptions);
            try
            {
                server.StartAsync().GetAwaiter().GetResult();
                string routing = served.Meteora is null ? "" : $" (\"meteora\" routes by {served.Routing}, top-{served.DefaultTopK})";
                ctx.Err.WriteLine($"serve: {string.Join(", ", served.ModelNames)}{routing} at {server.Address}; "
                    + $"max batch {engineOptions.MaxBatch}, context {engine.MaxContext}; Ctrl-C drains and stops");
                ctx.Err.WriteLine($"serve: chat prompts use {(template is null ? "the plain template (\"role: content\" lines)" : $"the chat template of {template.Origin}")}");
                server.WaitForShutdownAsync().GetAwaiter().GetResult();
                ctx.Err.WriteLine("serve: stopped");
            }
            finally
            {
                server.DisposeAsync().AsTask().GetAwaiter().GetResult();
            }
            return 0;
        });
        return cmd;
    }

    // The model's own template; one it does not have, or that this engine cannot parse, leaves the plain template
    // (with a warning naming the reason) rather than refusing to serve.
    private static HfChatTemplate? ModelTemplateOrPlain(string baseFolder, TextWriter err)
    {
        try
        {
            return HfChatTemplate.Load(baseFolder);
        }
        catch (MeteoraException e)
        {
            err.WriteLine($"serve: warning: the model's chat template cannot be used ({e.Message}); chat prompts use the plain template (--chat-template FILE gives another)");
            return null;
        }
    }
}
