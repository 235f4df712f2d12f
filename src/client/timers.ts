/** The longest delay `setTimeout` takes; a longer one would fire at once. */
export const MAX_TIMER = 2_147_483_647;
