using System.Text;

namespace Meteora.Tests.Cli;

/// <summary>Every bad input of the foundation issue: one line naming the file and the cause, exit code 1.</summary>
public class CliErrorTests
{
    private static CliRunner.Result Forward(string model, params string[] extra) =>
        CliRunner.Run(["forward", "--model", model, "--ids", "0,270,27", "--out", Path.Combine(Path.GetTempPath(), $"meteora-{Guid.NewGuid():N}.safetensors"), .. extra]);

    [Fact]
    public void MissingModelFolder()
    {
        var r = Forward("/nonexistent/model");
        CliRunner.AssertUserError(r, "/nonexistent/model", "model folder not found");
    }

    [Fact]
    public void MissingConfig()
    {
        using var dir = Fixture.TempDir();
        string m = ModelFolder.CopyBase(dir);
        File.Delete(Path.Combine(m, "config.json"));
        CliRunner.AssertUserError(Forward(m), Path.Combine(m, "config.json"), "file not found");
    }

    [Fact]
    public void MissingWeights()
    {
        using var dir = Fixture.TempDir();
        string m = ModelFolder.CopyBase(dir);
        File.Delete(Path.Combine(m, "model.safetensors"));
        CliRunner.AssertUserError(Forward(m), m, "no model.safetensors");
    }

    [Fact]
    public void TruncatedSafetensors()
    {
        using var dir = Fixture.TempDir();
        string m = ModelFolder.CopyBase(dir);
        string f = Path.Combine(m, "model.safetensors");
        using (var fs = new FileStream(f, FileMode.Open)) fs.SetLength(fs.Length / 2);
        CliRunner.AssertUserError(Forward(m), f, "truncated");
    }

    [Fact]
    public void CorruptSafetensorsHeader()
    {
        using var dir = Fixture.TempDir();
        string m = ModelFolder.CopyBase(dir);
        string f = Path.Combine(m, "model.safetensors");
        var bytes = File.ReadAllBytes(f);
        Encoding.ASCII.GetBytes("#garbage#").CopyTo(bytes, 8);
        File.WriteAllBytes(f, bytes);
        CliRunner.AssertUserError(Forward(m), f, "not valid JSON");
    }

    [Fact]
    public void MissingTensor()
    {
        using var dir = Fixture.TempDir();
        string m = ModelFolder.CopyBase(dir);
        var weights = ModelFolder.ReadWeights(m).Where(w => w.Key != "model.layers.1.mlp.up_proj.weight");
        Meteora.IO.SafeTensorsWriter.Write(Path.Combine(m, "model.safetensors"), weights);
        CliRunner.AssertUserError(Forward(m), Path.Combine(m, "model.safetensors"), "missing tensor 'model.layers.1.mlp.up_proj.weight'");
    }

    [Fact]
    public void TensorShapeThatContradictsTheConfig()
    {
        using var dir = Fixture.TempDir();
        string m = ModelFolder.CopyBase(dir);
        ModelFolder.EditConfig(m, c => c["intermediate_size"] = 160);
        CliRunner.AssertUserError(Forward(m), Path.Combine(m, "config.json"), "model.layers.0.mlp.gate_proj.weight", "has shape (176, 64) but config.json implies (160, 64)");
    }

    [Fact]
    public void UnsupportedModelType()
    {
        using var dir = Fixture.TempDir();
        string m = ModelFolder.CopyBase(dir);
        ModelFolder.EditConfig(m, c => c["model_type"] = "gpt2");
        CliRunner.AssertUserError(Forward(m), Path.Combine(m, "config.json"), "unsupported model_type 'gpt2'");
    }

    [Fact]
    public void UnsupportedRopeType()
    {
        using var dir = Fixture.TempDir();
        string m = ModelFolder.CopyBase(dir);
        ModelFolder.EditConfig(m, c => c["rope_parameters"]!["rope_type"] = "dynamic");
        CliRunner.AssertUserError(Forward(m), Path.Combine(m, "config.json"), "unsupported rope_type 'dynamic'");
    }

    [Fact]
    public void UnknownDtype() => CliRunner.AssertUserError(Forward(Fixture.Base, "--dtype", "float8"), "--dtype", "unknown dtype 'float8'");

    [Fact]
    public void UnknownDevice() => CliRunner.AssertUserError(Forward(Fixture.Base, "--device", "tpu"), "--device", "unknown device 'tpu'");

    [NoCudaFact]
    public void CudaWhereThereIsNone() =>
        CliRunner.AssertUserError(Forward(Fixture.Base, "--device", "cuda"), "--device cuda", "no CUDA device");

    [Fact]
    public void TokenIdOutsideTheVocabulary() =>
        CliRunner.AssertUserError(CliRunner.Run("forward", "--model", Fixture.Base, "--ids", "0,999", "--out", "/tmp/x.safetensors"), "--ids", "token id 999");

    [Fact]
    public void MissingTokenizer()
    {
        using var dir = Fixture.TempDir();
        string m = ModelFolder.CopyBase(dir);
        File.Delete(Path.Combine(m, "tokenizer.json"));
        CliRunner.AssertUserError(CliRunner.Run("tokenize", "--model", m, "--text", "x"), Path.Combine(m, "tokenizer.json"), "file not found");
    }

    [Fact]
    public void ForwardFailureLeavesAnExistingOutputUntouched()
    {
        using var dir = Fixture.TempDir();
        string outPath = dir["logits.safetensors"];
        File.WriteAllText(outPath, "previous");
        var r = CliRunner.Run("forward", "--model", "/nonexistent", "--ids", "0", "--out", outPath);
        Assert.Equal(1, r.ExitCode);
        Assert.Equal("previous", File.ReadAllText(outPath));
    }
}

public class ServeChatTemplateOptionTests
{
    /// <summary>serve --chat-template FILE: a missing or unparsable file is a one-line error before the model loads.</summary>
    [Fact]
    public void AMissingOrBrokenTemplateFileIsAOneLineError()
    {
        using var dir = Fixture.TempDir();
        string bad = Path.Combine(dir["t"], "bad.jinja");
        Directory.CreateDirectory(dir["t"]);
        File.WriteAllText(bad, "{% for x in %}");
        CliRunner.AssertUserError(CliRunner.Run("serve", "--model", Fixture.Base, "--port", "0", "--chat-template", Path.Combine(dir["t"], "none.jinja")),
            "none.jinja", "chat template file not found");
        CliRunner.AssertUserError(CliRunner.Run("serve", "--model", Fixture.Base, "--port", "0", "--chat-template", bad), "bad.jinja", "line 1", "expression expected");
    }
}
