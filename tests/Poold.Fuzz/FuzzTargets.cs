using Poold.Fuzz.Targets;

namespace Poold.Fuzz;

/// <summary>A harness: parses one input and returns; an exception escaping it is a crash.</summary>
internal delegate void FuzzTarget(ReadOnlySpan<byte> input);

/// <summary>
/// Every harness by name (the folder name of its corpus, tests/Poold.Fuzz/corpus/NAME). Each feeds an input to a
/// parser the way Poold does, catches the exceptions that parser documents for bad input, and lets anything else out.
/// </summary>
internal static class FuzzTargets
{
    public static IReadOnlyDictionary<string, FuzzTarget> All { get; } = new Dictionary<string, FuzzTarget>(StringComparer.Ordinal)
    {
        ["startup"] = StartupPacketTarget.Run,
        ["scram-server"] = ScramServerTarget.Run,
        ["scram-client"] = ScramClientTarget.Run,
        ["frames"] = FrameReaderTarget.Run,
        ["sql"] = SqlTarget.Run,
        ["conf"] = ConfTarget.Run,
        ["hba"] = HbaTarget.Run,
        ["passwd"] = PoolPasswdTarget.Run,
        ["pcp"] = PcpTarget.Run,
    };
}

/// <summary>A harness found a broken invariant (wrong result rather than an exception): a crash like any other.</summary>
internal sealed class FuzzInvariantException(string message) : Exception(message);
