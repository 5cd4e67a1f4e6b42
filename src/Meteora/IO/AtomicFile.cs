namespace Meteora.IO;

/// <summary>
/// Writes a file or folder under a temporary name beside its destination and renames it into place, so a crash
/// midway never leaves a half-written output or destroys the previous one.
/// </summary>
public static class AtomicFile
{
    /// <summary>Calls <paramref name="write"/> with a temp path next to <paramref name="path"/>, then renames it over <paramref name="path"/>.</summary>
    public static void Write(string path, Action<string> write)
    {
        string full = System.IO.Path.GetFullPath(path);
        string? dir = System.IO.Path.GetDirectoryName(full);
        if (!string.IsNullOrEmpty(dir)) Directory.CreateDirectory(dir);
        string temp = $"{full}.tmp-{Environment.ProcessId}-{Guid.NewGuid():N}";
        try
        {
            write(temp);
            File.Move(temp, full, overwrite: true);
        }
        finally
        {
            if (File.Exists(temp)) File.Delete(temp);
        }
    }

    /// <summary>
    /// Writes a folder as one consistent save: <paramref name="write"/> fills a staging folder beside
    /// <paramref name="folder"/>; the entries of an existing <paramref name="folder"/> that the save does not own
    /// (<paramref name="owned"/> false: training logs, plots, …) are moved into the staging folder, the old folder is
    /// renamed aside, the staging folder renamed into place, and the old one deleted. Files the save owns but did not
    /// write this time (a previous save's optional file) are thereby dropped, never mixed with the new ones. Renames
    /// keep open files valid (same filesystem), so a log being written into the folder continues in the new one.
    /// </summary>
    public static void ReplaceFolder(string folder, Action<string> write, Func<string, bool> owned)
    {
        string full = System.IO.Path.GetFullPath(folder).TrimEnd(System.IO.Path.DirectorySeparatorChar);
        string parent = System.IO.Path.GetDirectoryName(full)!;
        Directory.CreateDirectory(parent);
        string name = System.IO.Path.GetFileName(full), tag = $"{Environment.ProcessId}-{Guid.NewGuid():N}";
        string staging = System.IO.Path.Combine(parent, $".{name}.tmp-{tag}"), old = System.IO.Path.Combine(parent, $".{name}.old-{tag}");
        Directory.CreateDirectory(staging);
        try
        {
            write(staging);
            if (full == System.IO.Path.GetFullPath(Environment.CurrentDirectory).TrimEnd(System.IO.Path.DirectorySeparatorChar))
            {
                // The working directory itself cannot be renamed away under the process: drop the owned files this
                // save did not write, then move the new ones in (the config last would still be a window; rare use).
                foreach (var f in Directory.EnumerateFiles(full).Where(f => owned(System.IO.Path.GetFileName(f))))
                    if (!File.Exists(System.IO.Path.Combine(staging, System.IO.Path.GetFileName(f)))) File.Delete(f);
                foreach (var f in Directory.EnumerateFiles(staging)) File.Move(f, System.IO.Path.Combine(full, System.IO.Path.GetFileName(f)), overwrite: true);
                return;
            }
            if (Directory.Exists(full))
            {
                foreach (var entry in new DirectoryInfo(full).EnumerateFileSystemInfos())
                {
                    if (owned(entry.Name) || File.Exists(System.IO.Path.Combine(staging, entry.Name)) || Directory.Exists(System.IO.Path.Combine(staging, entry.Name))) continue;
                    string to = System.IO.Path.Combine(staging, entry.Name);
                    if (entry is DirectoryInfo d) d.MoveTo(to); else ((FileInfo)entry).MoveTo(to);
                }
                Directory.Move(full, old);
            }
            Directory.Move(staging, full);
        }
        finally
        {
            if (Directory.Exists(staging)) Directory.Delete(staging, true);
        }
        if (Directory.Exists(old)) Directory.Delete(old, true);
    }

    /// <summary>Writes text atomically.</summary>
    public static void WriteAllText(string path, string text) => Write(path, tmp => File.WriteAllText(tmp, text));

    /// <summary>Writes bytes atomically.</summary>
    public static void WriteAllBytes(string path, byte[] bytes) => Write(path, tmp => File.WriteAllBytes(tmp, bytes));
}
