using Meteora.Training;

namespace Meteora.Tests.Training;

/// <summary>Training progress that keeps the trainers' messages, for tests that assert what a run reported.</summary>
internal sealed class RecordingProgress : ITrainingProgress
{
    public List<string> Messages { get; } = new();
    public void Start(int totalSteps, int startStep) { }
    public void Step(int step, int totalSteps, IReadOnlyDictionary<string, double> metrics, double tokensPerSecond, TimeSpan eta) { }
    public void Evaluation(int step, IReadOnlyDictionary<string, double> metrics) { }
    public void Message(string text) => Messages.Add(text);
    public void Stop() { }
}
