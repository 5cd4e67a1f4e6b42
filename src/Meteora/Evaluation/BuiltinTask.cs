namespace Meteora.Evaluation;

/// <summary>
/// One task of the built-in suite: a name (the folder and adapter name), the metric that scores it, a one-line
/// description, and a generator of (prompt, response) pairs from a seeded random source.
/// </summary>
public sealed record BuiltinTask(string Name, string Metric, string Description, Func<Random, (string Prompt, string Response)> Make);
