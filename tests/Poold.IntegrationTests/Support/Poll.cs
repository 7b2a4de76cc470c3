using System.Diagnostics;

namespace Poold.IntegrationTests.Support;

/// <summary>The only way tests wait: poll a condition until it holds or a deadline passes.</summary>
internal static class Poll
{
    private static readonly TimeSpan Interval = TimeSpan.FromMilliseconds(50);

    public static async Task UntilAsync(Func<Task<bool>> condition, TimeSpan timeout, string because)
    {
        var watch = Stopwatch.StartNew();
        Exception? last = null;
        while (true)
        {
            try
            {
                if (await condition())
                {
                    return;
                }
            }
            catch (Exception e) when (e is not AssertionException)
            {
                last = e;
            }

            if (watch.Elapsed > timeout)
            {
                throw new TimeoutException($"waited {timeout.TotalSeconds:0.#} s for {because}" + (last is null ? "" : $"; last error: {last.Message}"), last);
            }

            await Task.Delay(Interval);
        }
    }
}
