namespace Meteora.Training;

/// <summary>Linear warm-up from 0 to the peak, then cosine decay to <see cref="MinRatio"/> × peak at the last step.</summary>
internal sealed record CosineSchedule(double PeakLr, int WarmupSteps, int TotalSteps, double MinRatio = 0.0)
{
    /// <summary>Learning rate for optimiser step <paramref name="step"/> (0-based).</summary>
    public double At(int step)
    {
        if (WarmupSteps > 0 && step < WarmupSteps) return PeakLr * (step + 1) / WarmupSteps;
        int decaySteps = Math.Max(1, TotalSteps - WarmupSteps);
        double progress = Math.Clamp((double)(step - WarmupSteps) / decaySteps, 0, 1);
        double cosine = 0.5 * (1 + Math.Cos(Math.PI * progress));
        return PeakLr * (MinRatio + (1 - MinRatio) * cosine);
    }
}
