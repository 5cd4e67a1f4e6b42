namespace Meteora.Llama;

/// <summary>
/// Rotary embedding settings. <see cref="RopeType"/> is "default" or "llama3" (Llama 3.1 frequency scaling,
/// which uses <see cref="Factor"/>, <see cref="LowFreqFactor"/>, <see cref="HighFreqFactor"/> and
/// <see cref="OriginalMaxPositionEmbeddings"/>).
/// </summary>
public sealed record RopeParameters(
    double Theta,
    string RopeType = "default",
    double Factor = 1.0,
    double LowFreqFactor = 1.0,
    double HighFreqFactor = 4.0,
    int OriginalMaxPositionEmbeddings = 8192);
