namespace Meteora.Cli;

/// <summary>Parses "1,2,3" token id lists given on the command line.</summary>
public static class TokenIdList
{
    public static int[] Parse(string text, string option = "--ids")
    {
        var parts = text.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries);
        if (parts.Length == 0) throw new MeteoraException($"{option}: no token ids given");
        return parts.Select(p => int.TryParse(p, out int id) && id >= 0 ? id
            : throw new MeteoraException($"{option}: '{p}' is not a token id")).ToArray();
    }

    /// <summary>Checks every id against the vocabulary size.</summary>
    public static void CheckRange(int[] ids, int vocab, string option = "--ids")
    {
        foreach (int id in ids)
            if (id >= vocab) throw new MeteoraException($"{option}: token id {id} is outside the vocabulary of {vocab}");
    }
}
