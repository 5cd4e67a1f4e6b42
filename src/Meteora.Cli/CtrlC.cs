namespace Meteora.Cli;

/// <summary>
/// Turns Ctrl-C into a cancellation request for the duration of a long command, so training can finish its
/// step and write a checkpoint instead of dying mid-write. A second Ctrl-C ends the process as usual.
/// </summary>
public sealed class CtrlC : IDisposable
{
    private readonly CancellationTokenSource _cts = new();
    private readonly ConsoleCancelEventHandler _handler;

    public CtrlC(TextWriter err)
    {
        _handler = (_, e) =>
        {
            if (_cts.IsCancellationRequested) return;   // second press: let the runtime terminate
            e.Cancel = true;
            _cts.Cancel();
            err.WriteLine("\ninterrupted: finishing this step and writing a checkpoint (Ctrl-C again to abort) …");
        };
        Console.CancelKeyPress += _handler;
    }

    public CancellationToken Token => _cts.Token;
    public bool Requested => _cts.IsCancellationRequested;

    public void Dispose()
    {
        Console.CancelKeyPress -= _handler;
        _cts.Dispose();
    }
}
