namespace Poold.Hosting;

/// <summary>
/// What an accept loop does after accept fails (EMFILE, ENFILE, ENOBUFS...): the failed connection stays in the
/// kernel's queue, so retrying at once fails again at once and spins a core while flooding the log. Each consecutive
/// failure waits twice as long, from 10 ms up to 1 s, and only the first failure of a run is logged in full; the next
/// success ends the run (and logs how many failed).
/// </summary>
internal sealed class AcceptBackoff
{
    public static readonly TimeSpan First = TimeSpan.FromMilliseconds(10);
    public static readonly TimeSpan Max = TimeSpan.FromSeconds(1);

    private TimeSpan _next = First;

    /// <summary>Consecutive failures so far.</summary>
    public int Failures { get; private set; }

    /// <summary>Records a failure; returns how long to wait before the next accept, and whether to log this one.</summary>
    public (TimeSpan Delay, bool Log) Failed()
    {
        Failures++;
        var delay = _next;
        _next = TimeSpan.FromTicks(Math.Min(_next.Ticks * 2, Max.Ticks));
        return (delay, Failures == 1 || Failures % 100 == 0);
    }

    /// <summary>Records a success; returns how many failures it ended (0 when there was no run of failures).</summary>
    public int Succeeded()
    {
        var ended = Failures;
        Failures = 0;
        _next = First;
        return ended;
    }
}
