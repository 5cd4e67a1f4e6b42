namespace Meteora.Tokenization.Jinja;

/// <summary>
/// A template failed while rendering: it called <c>raise_exception</c> (<see cref="Raised"/>: the template refuses
/// its input, e.g. roles that do not alternate) or it did something invalid for its values (a type error, an
/// attribute of an undefined value). The message is one line and names the template line.
/// </summary>
public sealed class TemplateRenderException(string message, bool raised) : Exception(message)
{
    /// <summary>True when the template itself raised the error (its input was refused), false for a template fault.</summary>
    public bool Raised { get; } = raised;
}
