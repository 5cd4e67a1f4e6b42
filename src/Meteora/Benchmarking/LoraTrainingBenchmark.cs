using Meteora.Distributed;
using Meteora.Llama;
using Meteora.Lora;
using Meteora.Runtime;
using Meteora.Training;
using static TorchSharp.torch;

namespace Meteora.Benchmarking;

/// <summary>
/// LoRA training on a model with random weights (a preset such as llama3-8b, or any config): one rank-r adapter on
/// every projection, float32 A and B over the base in <c>dtype</c>, through the same <see cref="LoraObjective"/> and
/// training loop as <c>train-lora</c>; throughput after the warm-up steps, device memory after every step. With a
/// communicator of W ranks, each rank trains <c>batch</c> sequences per step (global batch W × batch).
/// </summary>
public static class LoraTrainingBenchmark
{
    public static GateTrainingBenchResult Run(LlamaConfig config, int rank, int seqLen, int batch, int steps, int warmupSteps,
        Device device, ScalarType dtype, Action<string>? log = null, ICommunicator? communicator = null, bool phases = false, bool? cudaGraphs = null)
    {
        long? baseline = device.type == TorchSharp.DeviceType.CUDA ? CudaRuntime.DeviceUsedBytes() : null;
        var lora = new LoraConfig { R = rank, LoraAlpha = 2 * rank, TargetModules = ProjectionSite.AllNames, LoraDropout = 0 };
        using var lm = new LlamaForCausalLM(config, dtype, device, LoraModel.Factory(lora, _ => true, dtype, ScalarType.Float32, device));
        lm.InitializeRandom(seed: 0);
        var objective = new LoraObjective(lm, lora);
        objective.Initialize(seed: 1);
        log?.Invoke($"built the model with one random rank-{rank} adapter on every projection");
        return TrainingThroughput.Measure(objective, config.VocabSize, 1, seqLen, batch, steps, warmupSteps, device, baseline, communicator, phases, cudaGraphs, log);
    }
}
