using System.Text;
using Meteora.IO;
using static TorchSharp.torch;

namespace Meteora.Tests.IO;

public class SafeTensorsFileTests
{
    /// <summary>Writes an 8-byte length, <paramref name="header"/> and <paramref name="dataBytes"/> zero bytes.</summary>
    private static string Raw(TempDir dir, string header, int dataBytes, long? declaredLength = null)
    {
        string path = dir["raw.safetensors"];
        var h = Encoding.UTF8.GetBytes(header);
        using var fs = File.Create(path);
        fs.Write(BitConverter.GetBytes((ulong)(declaredLength ?? h.Length)));
        fs.Write(h);
        fs.Write(new byte[dataBytes]);
        return path;
    }

    private static void AssertCorrupt(string path, string cause)
    {
        var e = Assert.Throws<MeteoraException>(() => SafeTensorsFile.Open(path).Dispose());
        Assert.Contains(path, e.Message);
        Assert.Contains(cause, e.Message);
        Assert.DoesNotContain('\n', e.Message);
    }

    [Fact]
    public void WriterAndReaderRoundTripEveryDtype()
    {
        using var dir = Fixture.TempDir();
        var src = new Dictionary<string, Tensor>
        {
            ["f32"] = randn(3, 5),
            ["bf16"] = randn(4, 2).to(ScalarType.BFloat16),
            ["f16"] = randn(7).to(ScalarType.Float16),
            ["i64"] = arange(6, ScalarType.Int64).view(2, 3),
            ["empty"] = zeros(0, 4),
        };
        string path = dir["t.safetensors"];
        SafeTensorsWriter.Write(path, src, new Dictionary<string, string> { ["format"] = "pt" });
        using var f = SafeTensorsFile.Open(path);
        Assert.Equal("pt", f.Metadata["format"]);
        foreach (var (name, t) in src)
        {
            var back = f.Load(name);
            Assert.Equal(t.dtype, back.dtype);
            Assert.True(t.equal(back).all().item<bool>(), name);
        }
    }

    [Fact]
    public void LoadConvertsDtypeInChunksWithoutChangingValues()
    {
        using var dir = Fixture.TempDir();
        var t = randn(300, 7);
        SafeTensorsWriter.Write(dir["t.safetensors"], [new("x", t)]);
        using var f = SafeTensorsFile.Open(dir["t.safetensors"]);
        Assert.True(t.to(ScalarType.BFloat16).equal(f.Load("x", ScalarType.BFloat16)).all().item<bool>());
    }

    [Fact]
    public void ShorterThanTheLengthPrefixIsCorrupt()
    {
        using var dir = Fixture.TempDir();
        File.WriteAllBytes(dir["short.safetensors"], [1, 2, 3]);
        AssertCorrupt(dir["short.safetensors"], "shorter than the 8-byte header length");
    }

    [Fact]
    public void HeaderLengthPastTheEndIsCorrupt() =>
        AssertInTemp(dir => Raw(dir, "{}", 0, declaredLength: 4096), "runs past the end");

    [Fact]
    public void HeaderThatIsNotJsonIsCorrupt() =>
        AssertInTemp(dir => Raw(dir, "{not json", 0), "not valid JSON");

    [Fact]
    public void UnknownDtypeIsCorrupt() =>
        AssertInTemp(dir => Raw(dir, """{"x":{"dtype":"Q4","shape":[2],"data_offsets":[0,2]}}""", 2), "unsupported dtype 'Q4'");

    [Fact]
    public void ShapeTimesDtypeSizeMustEqualTheSpan() =>
        AssertInTemp(dir => Raw(dir, """{"x":{"dtype":"F32","shape":[2,3],"data_offsets":[0,20]}}""", 20), "needs 24 bytes but spans 20");

    [Fact]
    public void AShapeWhoseElementCountOverflowsIsCorrupt() =>
        // 2³² × 2³² elements × 4 bytes wraps around to 0 in 64-bit arithmetic: unchecked, it would match the empty span.
        AssertInTemp(dir => Raw(dir, """{"x":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,0]}}""", 0), "too many elements");

    [Fact]
    public void OffsetsPastTheDataAreCorrupt() =>
        AssertInTemp(dir => Raw(dir, """{"x":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}}""", 8), "truncated");

    [Fact]
    public void OverlappingTensorsAreCorrupt() =>
        AssertInTemp(dir => Raw(dir, """{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}""", 12), "overlap");

    [Fact]
    public void TruncatedRealFileIsCorrupt()
    {
        using var dir = Fixture.TempDir();
        string path = dir["t.safetensors"];
        SafeTensorsWriter.Write(path, [new("w", randn(64, 64))]);
        using (var fs = new FileStream(path, FileMode.Open)) fs.SetLength(fs.Length - 100);
        AssertCorrupt(path, "truncated");
    }

    [Fact]
    public void MissingTensorAndWrongDestinationShapeNameFileAndTensor()
    {
        using var dir = Fixture.TempDir();
        string path = dir["t.safetensors"];
        SafeTensorsWriter.Write(path, [new("w", randn(2, 3))]);
        using var f = SafeTensorsFile.Open(path);
        var missing = Assert.Throws<MeteoraException>(() => f.Load("v"));
        Assert.Contains($"{path}: missing tensor 'v'", missing.Message);
        var shape = Assert.Throws<MeteoraException>(() => f.ReadInto("w", empty(3, 2)));
        Assert.Contains("has shape (2, 3), expected (3, 2)", shape.Message);
    }

    [Fact]
    public void AWriteThatFailsMidwayLeavesThePreviousFileIntact()
    {
        using var dir = Fixture.TempDir();
        string path = dir["t.safetensors"];
        SafeTensorsWriter.Write(path, [new("w", ones(4))]);
        var before = File.ReadAllBytes(path);
        // A complex tensor cannot be written: the writer fails after choosing the path, before the rename.
        Assert.Throws<MeteoraException>(() => SafeTensorsWriter.Write(path, [new("w", zeros(4)), new("c", zeros(2, ScalarType.ComplexFloat32))]));
        Assert.Equal(before, File.ReadAllBytes(path));
        Assert.Single(Directory.GetFiles(dir.Path));
    }

    private static void AssertInTemp(Func<TempDir, string> make, string cause)
    {
        using var dir = Fixture.TempDir();
        AssertCorrupt(make(dir), cause);
    }
}
