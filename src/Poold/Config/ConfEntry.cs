namespace Poold.Config;

/// <summary>One <c>name = value</c> assignment read from a pgpool.conf-style file.</summary>
/// <param name="Quoted">The value was a single-quoted string (quotes stripped, nothing unescaped).</param>
internal readonly record struct ConfEntry(string Name, string Value, bool Quoted, string File, int Line);
