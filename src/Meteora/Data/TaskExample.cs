namespace Meteora.Data;

/// <summary>One <c>{"prompt": …, "response": …}</c> line of a task's train.jsonl or test.jsonl.</summary>
public sealed record TaskExample(string Prompt, string Response);
