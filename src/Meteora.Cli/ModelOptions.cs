using System.CommandLine;
using Meteora.Llama;
using Meteora.Lora;

namespace Meteora.Cli;

/// <summary>The options that choose a model: <c>--model DIR</c> and optionally <c>--adapter DIR</c>.</summary>
public sealed class ModelOptions
{
    public Option<string> Model { get; } = new("--model") { Description = "Hugging Face model folder", Required = true };
    public Option<string?> Adapter { get; } = new("--adapter") { Description = "PEFT LoRA adapter folder, applied without merging" };

    public void AddTo(Command command)
    {
        command.Options.Add(Model);
        command.Options.Add(Adapter);
    }

    /// <summary>Loads the model the options describe on the context's device and dtype.</summary>
    public LlamaForCausalLM Load(ParseResult p, CliContext ctx)
    {
        string folder = p.GetValue(Model)!;
        return p.GetValue(Adapter) is { } adapter
            ? LoraModel.Load(folder, adapter, ctx.Device, ctx.DType)
            : LlamaLoader.Load(folder, ctx.Device, ctx.DType);
    }
}
