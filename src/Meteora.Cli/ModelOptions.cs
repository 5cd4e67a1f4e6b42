using System.CommandLine;
using Meteora.Llama;
using Meteora.Lora;
using Meteora.Moe;

namespace Meteora.Cli;

/// <summary>A model chosen on the command line: the LLaMA module, and the MeteoRA wrapper when there is one.</summary>
public sealed class LoadedModel : IDisposable
{
    public required LlamaForCausalLM Lm { get; init; }
    public MeteoraModel? Meteora { get; init; }

    public void Dispose()
    {
        if (Meteora is not null) Meteora.Dispose();
        else Lm.Dispose();
    }
}

/// <summary>
/// The options that choose a model: <c>--model DIR</c>, optionally <c>--adapter DIR</c> (one LoRA, unmerged) or
/// <c>--meteora DIR</c> with <c>--top-k</c>, <c>--temperature</c> and <c>--strategy</c>.
/// </summary>
public sealed class ModelOptions
{
    public Option<string> Model { get; } = new("--model") { Description = "Hugging Face model folder", Required = true };
    public Option<string?> Adapter { get; } = new("--adapter") { Description = "PEFT LoRA adapter folder, applied without merging" };
    public Option<string?> Meteora { get; } = new("--meteora") { Description = "MeteoRA checkpoint folder" };
    public Option<int?> TopK { get; } = new("--top-k") { Description = "adapters per token (default: the checkpoint's)" };
    public Option<double?> Temperature { get; } = new("--temperature") { Description = "routing softmax temperature (default: the checkpoint's)" };
    public Option<string> Strategy { get; } = new("--strategy") { Description = "mixing strategy: auto (dense or segment by size), dense, segment, gather or loop", DefaultValueFactory = _ => "auto" };

    public void AddTo(Command command)
    {
        foreach (var o in new Option[] { Model, Adapter, Meteora, TopK, Temperature, Strategy }) command.Options.Add(o);
    }

    /// <summary>Loads the model the options describe on the context's device and dtype.</summary>
    public LoadedModel Load(ParseResult p, CliContext ctx)
    {
        string folder = p.GetValue(Model)!;
        string? adapter = p.GetValue(Adapter), meteora = p.GetValue(Meteora);
        if (adapter is not null && meteora is not null) throw new MeteoraException("--adapter and --meteora exclude each other");
        bool routingGiven = p.GetValue(TopK) is not null || p.GetValue(Temperature) is not null || p.GetResult(Strategy) is { Implicit: false };
        if (meteora is null && routingGiven) throw new MeteoraException("--top-k, --temperature and --strategy need --meteora");
        if (meteora is null)
            return new LoadedModel { Lm = adapter is not null ? LoraModel.Load(folder, adapter, ctx.Device, ctx.DType) : LlamaLoader.Load(folder, ctx.Device, ctx.DType) };
        var strategy = MixingStrategies.Parse(p.GetValue(Strategy)!);
        var m = MeteoraModel.Load(folder, meteora, ctx.Device, ctx.DType);
        try
        {
            m.Configure(p.GetValue(TopK), p.GetValue(Temperature), strategy);
        }
        catch
        {
            m.Dispose();
            throw;
        }
        return new LoadedModel { Lm = m.Model, Meteora = m };
    }
}
